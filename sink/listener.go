package sink

import (
	"net"
	"sync"
	"time"
)

// listener wraps every accepted connection in a legacyConn, caps how many are
// open at once and keeps a registry so Shutdown can reach idle sessions.
//
// A client over the cap is answered 421 at once rather than left waiting in
// the kernel's backlog: a device that gets a 4xx retries later, one that
// times out may not.
type listener struct {
	net.Listener
	srv   *Server
	slots chan struct{}

	mu    sync.Mutex
	conns map[*legacyConn]struct{}
}

func newListener(l net.Listener, s *Server) *listener {
	return &listener{
		Listener: l,
		srv:      s,
		slots:    make(chan struct{}, s.cfg.MaxConnections),
		conns:    make(map[*legacyConn]struct{}),
	}
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.srv.log.Warn("connection refused: too many connections",
				"remote_addr", c.RemoteAddr().String(), "max_connections", l.srv.cfg.MaxConnections)
			go rejectBusy(c, l.srv.cfg.Domain)
			continue
		}
		lc := newLegacyConn(c, !l.srv.cfg.StrictLineEndings, l.srv.cfg.DataTimeout)
		lc.onClose = func() {
			l.mu.Lock()
			delete(l.conns, lc)
			l.mu.Unlock()
			<-l.slots
		}
		l.mu.Lock()
		l.conns[lc] = struct{}{}
		draining := l.srv.draining()
		l.mu.Unlock()
		if draining {
			lc.drain()
		}
		return lc, nil
	}
}

// drainAll asks every open session to end once its current mail is done.
func (l *listener) drainAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.drain()
	}
}

func rejectBusy(c net.Conn, domain string) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("421 4.7.0 " + domain + " too many connections, try again later\r\n"))
}
