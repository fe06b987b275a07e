package smtpd

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// listener wraps every accepted connection in a clientConn, TLS on an
// implicit-TLS listener, and the line shim above both; caps how many are
// open at once and keeps a registry so Shutdown can reach idle sessions.
//
// A client over the cap is answered 421 at once rather than left waiting in
// the kernel's backlog: a device that gets a 4xx retries later, one that
// times out may not.
type listener struct {
	net.Listener
	srv   *Server
	slots chan struct{} // the server's: max_connections counts every listener's clients together
	tls   *tls.Config   // implicit TLS; nil for plain SMTP
	// refusing bounds the refusals being written at once (each may take a
	// TLS handshake and up to 5 s); beyond it a client is just closed.
	refusing chan struct{}

	mu    sync.Mutex
	conns map[*clientConn]struct{}
}

func newListener(l net.Listener, s *Server, tlsConfig *tls.Config) *listener {
	return &listener{
		Listener: l,
		srv:      s,
		tls:      tlsConfig,
		refusing: make(chan struct{}, maxRefusing),
		slots:    s.slots,
		conns:    make(map[*clientConn]struct{}),
	}
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.srv.stopping.Load() {
			// Shutting down: say so instead of leaving the device to time
			// out; it retries later, against the restarted edgesink.
			go l.refuse(c, "421 4.3.2 "+l.srv.cfg.Domain+" shutting down, try again later\r\n")
			continue
		}
		addr := remoteAddr(c)
		if !l.srv.cfg.Policy.allowsNetwork(addr) {
			// 554 instead of the greeting (RFC 5321 3.1): this client may
			// not send here at all, and should not retry.
			l.srv.log.Warn("connection refused: client not on smtp.allow_networks", "remote_addr", c.RemoteAddr().String())
			go l.refuse(c, "554 5.7.1 "+l.srv.cfg.Domain+" "+addr.String()+" may not send mail here\r\n")
			continue
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.srv.log.Warn("connection refused: too many connections",
				"remote_addr", c.RemoteAddr().String(), "max_connections", l.srv.cfg.MaxConnections)
			go l.refuse(c, "421 4.7.0 "+l.srv.cfg.Domain+" too many connections, try again later\r\n")
			continue
		}
		if !l.srv.clients.open(addr) {
			<-l.slots
			l.srv.log.Warn("connection refused: too many connections from one address",
				"remote_addr", c.RemoteAddr().String(), "max_connections_per_ip", l.srv.cfg.Policy.MaxConnectionsPerIP)
			go l.refuse(c, "421 4.7.0 "+l.srv.cfg.Domain+" too many connections from your address, try again later\r\n")
			continue
		}
		obs := l.srv.observer()
		obs.ConnectionOpened()
		cc := &clientConn{Conn: c, onTLS: obs.TLSStarted}
		cc.onClose = func() {
			obs.ConnectionClosed()
			l.mu.Lock()
			delete(l.conns, cc)
			l.mu.Unlock()
			l.srv.clients.closed(addr)
			<-l.slots
		}
		l.mu.Lock()
		l.conns[cc] = struct{}{}
		l.mu.Unlock()
		if l.tls != nil {
			// Implicit TLS: the line shim works on what TLS decrypts.
			cc.tlsStarted()
			return newLineConn(tls.Server(cc, l.tls), l.srv.shimConfig()), nil
		}
		return newLineConn(cc, l.srv.shimConfig()), nil
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

// maxRefusing is how many refusals may be in progress at once.
const maxRefusing = 64

// refuse answers a client the listener will not serve, over TLS on an
// implicit-TLS listener (so the client can read why), then closes. Run as
// its own goroutine; in a flood of refused clients the surplus is closed
// without a word.
func (l *listener) refuse(c net.Conn, reply string) {
	select {
	case l.refusing <- struct{}{}:
		defer func() { <-l.refusing }()
	default:
		_ = c.Close()
		return
	}
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	reject(c, reply)
}

func reject(c net.Conn, reply string) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(reply))
}

// Close is what go-smtp calls to stop listening. During a graceful
// shutdown the socket stays open, so that new clients are told 421 until
// the sessions in progress are done; Server.Shutdown closes it then.
func (l *listener) Close() error {
	if l.srv.draining.Load() {
		return nil
	}
	return l.Listener.Close()
}
