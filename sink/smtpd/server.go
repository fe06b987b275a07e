package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
	"github.com/edgesink/edgesink/sink/extract"
)

// Config bounds what one SMTP server accepts. The zero value of a field means
// "use the default" from DefaultConfig. The yaml names are the keys of the
// configuration file's smtp section.
type Config struct {
	Domain            string        `yaml:"domain"`                        // name in the greeting
	MaxMessageBytes   int64         `yaml:"max_message_size" unit:"bytes"` // larger messages get 552
	MaxRecipients     int           `yaml:"max_recipients"`                // more RCPT get 452
	MaxLineLength     int           `yaml:"max_line_length"`               // longer lines end the session with 500
	MaxConnections    int           `yaml:"max_connections"`               // more concurrent clients get 421
	MaxMemory         int64         `yaml:"max_memory" unit:"bytes"`       // bytes of mail held at once, all connections together; beyond: 451
	ReadTimeout       time.Duration `yaml:"read_timeout"`                  // idle time allowed between commands
	WriteTimeout      time.Duration `yaml:"write_timeout"`                 // time allowed to write one reply
	DataTimeout       time.Duration `yaml:"data_timeout"`                  // time allowed for a whole DATA transfer
	DeliveryTimeout   time.Duration `yaml:"delivery_timeout"`              // time the Handler (the spool) gets before the reply is 451: its ctx deadline
	StrictLineEndings bool          `yaml:"strict_line_endings"`           // refuse bare LF (RFC 5321) instead of reading it as CRLF
	MaxHeaderBytes    int           `yaml:"max_header_size" unit:"bytes"`  // top-level header size; beyond: 552
	MaxMIMEParts      int           `yaml:"max_mime_parts"`                // MIME parts in one message; beyond: 552
	MaxErrors         int           `yaml:"max_errors"`                    // error replies in one session before the server hangs up (421)
	Policy            Policy        `yaml:",inline"`                       // who may send, and how much
	Auth              Auth          `yaml:"-"`                             // how devices log in (the file's auth section)
	// TLS, when set, offers STARTTLS on every listener and is what
	// ServeTLS (implicit TLS, port 465) speaks. Its GetCertificate may
	// change certificates while serving.
	TLS *tls.Config `yaml:"-"`
}

// DefaultConfig returns the limits edgesink uses unless told otherwise. They
// suit a Raspberry Pi serving a LAN of cameras and printers: a 25 MiB message
// holds several camera snapshots; 64 connections are far more than a home or
// small office produces, yet bound memory. It is the one place these
// defaults are written: the configuration file starts from it.
func DefaultConfig() Config {
	return Config{
		Domain:          "edgesink",
		MaxMessageBytes: 25 << 20,
		MaxRecipients:   50,
		MaxLineLength:   4096,
		MaxConnections:  64,
		MaxMemory:       64 << 20,
		ReadTimeout:     60 * time.Second,
		WriteTimeout:    60 * time.Second,
		DataTimeout:     10 * time.Minute,
		DeliveryTimeout: 30 * time.Second,
		MaxHeaderBytes:  DefaultMaxHeaderBytes,
		MaxMIMEParts:    DefaultMaxMIMEParts,
		MaxErrors:       DefaultMaxErrors,
		Policy:          Policy{}.withDefaults(),
		Auth:            Auth{Mode: AuthOff, Users: map[string]string{}},
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.Domain, d.Domain)
	orDefault(&c.MaxMessageBytes, d.MaxMessageBytes)
	orDefault(&c.MaxRecipients, d.MaxRecipients)
	orDefault(&c.MaxLineLength, d.MaxLineLength)
	orDefault(&c.MaxConnections, d.MaxConnections)
	orDefault(&c.MaxMemory, d.MaxMemory)
	orDefault(&c.ReadTimeout, d.ReadTimeout)
	orDefault(&c.WriteTimeout, d.WriteTimeout)
	orDefault(&c.DataTimeout, d.DataTimeout)
	orDefault(&c.DeliveryTimeout, d.DeliveryTimeout)
	orDefault(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&c.MaxMIMEParts, d.MaxMIMEParts)
	orDefault(&c.MaxErrors, d.MaxErrors)
	c.Policy = c.Policy.withDefaults()
	orDefault(&c.Auth.Mode, AuthOff)
	return c
}

// DefaultMaxErrors is how many error replies (4xx, 5xx) a session gets
// before the server hangs up: enough for a confused device, few for a
// scanner trying commands.
const DefaultMaxErrors = 10

// orDefault sets *v to d when *v is the zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Validate reports the first setting that cannot work. It checks a whole
// Config, as New has it after filling zero fields from DefaultConfig, so here
// a zero limit or an empty network list is an error. Errors name the
// setting's yaml key (config.KeyError).
func (c Config) Validate() error {
	if c.MaxMemory < c.MaxMessageBytes+readSlack {
		return config.Bad("max_memory", "%d bytes: must exceed max_message_size (%d) by at least 4KiB, or the largest mail could never be received",
			c.MaxMemory, c.MaxMessageBytes)
	}
	if len(c.Policy.Networks) == 0 {
		return config.Bad("allow_networks", "empty: no client could send; to allow any, list 0.0.0.0/0 and ::/0")
	}
	if c.MaxLineLength < 1000 {
		return config.Bad("max_line_length", "%d: must be at least 1000 (RFC 5321)", c.MaxLineLength)
	}
	for _, l := range []struct {
		key string
		v   int64
	}{
		{"max_message_size", c.MaxMessageBytes}, {"max_recipients", int64(c.MaxRecipients)},
		{"max_connections", int64(c.MaxConnections)}, {"max_memory", c.MaxMemory},
		{"read_timeout", int64(c.ReadTimeout)}, {"write_timeout", int64(c.WriteTimeout)},
		{"data_timeout", int64(c.DataTimeout)}, {"delivery_timeout", int64(c.DeliveryTimeout)},
		{"max_header_size", int64(c.MaxHeaderBytes)}, {"max_mime_parts", int64(c.MaxMIMEParts)},
		{"max_errors", int64(c.MaxErrors)},
		{"max_connections_per_ip", int64(c.Policy.MaxConnectionsPerIP)}, {"max_mails_per_minute", int64(c.Policy.MailsPerMinute)},
	} {
		if l.v <= 0 {
			return config.Bad(l.key, "must be greater than zero")
		}
	}
	if err := c.Policy.Validate(); err != nil {
		return err
	}
	return c.Auth.Validate()
}

// Outputs is implemented by a Handler that can name where it delivers; the
// sink puts the names in its per-alert log line.
type Outputs interface {
	Outputs() []string
}

// Server is an SMTP server that turns every mail into an Alert for a Handler.
type Server struct {
	cfg       Config
	noCapture bool // tests: go-smtp reads DATA itself (capture.go)
	handler   sink.Handler
	log       *slog.Logger
	smtp      *smtp.Server
	clients   *clients      // per-address connection counts and mail rates
	slots     chan struct{} // one per open connection, on any listener: MaxConnections

	ctx    context.Context // parent of handler contexts; cancelled by Close
	cancel context.CancelFunc

	stopping  atomic.Bool                          // Shutdown or Close began: new clients are answered 421
	draining  atomic.Bool                          // Shutdown in progress: listeners stay open to answer 421, idle sessions end
	buffered  atomic.Int64                         // bytes of mail held by sessions now, bounded by cfg.MaxMemory
	sleep     func(context.Context, time.Duration) // waits after a failed login; tests record instead
	mu        sync.Mutex
	listeners []*listener
	obs       Observer // Observe; nil: nobody listens
}

// New validates cfg and returns a server that hands alerts to h.
func New(cfg Config, h sink.Handler, log *slog.Logger) (*Server, error) {
	if h == nil {
		return nil, errors.New("sink: nil handler")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, handler: h, log: log, clients: newClients(cfg.Policy), sleep: sleepCtx,
		slots: make(chan struct{}, cfg.MaxConnections)}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Domain
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	// TLS is done by the line shim, below which go-smtp cannot see: it
	// would take every session for plain text and refuse AUTH. The
	// session applies the AUTH-needs-TLS rule itself (secure), and
	// go-smtp never gets the TLS config, so it never does STARTTLS.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.smtp = srv
	return s, nil
}

// Config returns the limits in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Serve answers SMTP on l until Shutdown or Close; it then returns nil.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(newListener(l, s, nil))
}

// ServeTLS answers SMTP over implicit TLS (SMTPS, port 465) on l, with
// Config.TLS, until Shutdown or Close.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("sink: ServeTLS without a TLS config")
	}
	return s.serve(newListener(l, s, s.cfg.TLS))
}

// shimConfig is what every session's line shim is told.
func (s *Server) shimConfig() shimConfig {
	return shimConfig{
		translateLF: !s.cfg.StrictLineEndings,
		maxErrors:   s.cfg.MaxErrors,
		startTLS:    s.cfg.TLS,
		handshake:   s.cfg.ReadTimeout,
		auth:        s.cfg.Auth.offered(),
		authPlain:   s.cfg.Auth.AllowInsecure,
		capture:     s.captureBudget(),
		maxLine:     s.cfg.MaxLineLength,
		maxMessage:  s.cfg.MaxMessageBytes,
	}
}

func (s *Server) serve(wl *listener) error {
	l := wl.Listener
	// Registered under mu, which closeListeners takes too: a Serve that
	// comes after Shutdown or Close began finds stopping set and returns
	// (its listener would otherwise never be closed, and Serve never
	// return); one that comes before is closed by them.
	s.mu.Lock()
	if s.stopping.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners = append(s.listeners, wl)
	s.mu.Unlock()
	err := s.smtp.Serve(wl)
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("sink: serve %s: %w", l.Addr(), err)
	}
	return nil
}

// Shutdown stops taking mail (new clients are answered 421), lets every
// mail already in transfer finish (its device gets its final reply), ends
// idle sessions with 421, and waits for all sessions to end. When ctx expires first, the remaining
// connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.stopping.Store(true)
	s.mu.Lock()
	for _, l := range s.listeners {
		l.drainAll()
	}
	s.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	s.draining.Store(false)
	s.closeListeners()
	if ctx.Err() != nil {
		s.Close()
		return ctx.Err()
	}
	s.cancel()
	return err
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		_ = l.Listener.Close()
	}
}

// Close closes every listener and connection at once and cancels alerts in
// delivery. It is safe to call more than once.
func (s *Server) Close() error {
	s.stopping.Store(true)
	s.draining.Store(false)
	s.closeListeners()
	s.cancel()
	err := s.smtp.Close()
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{srv: s, conn: c}
	sess.cc, _ = unwrap[*clientConn](c.Conn())
	sess.lc, _ = unwrap[*lineConn](c.Conn())
	return sess, nil
}

// session is one SMTP session as go-smtp sees it.
type session struct {
	srv   *Server
	conn  *smtp.Conn
	cc    *clientConn // nil only if Serve was bypassed
	lc    *lineConn   // nil only if Serve was bypassed
	from  string
	rcpts []string

	authUser     string // who logged in, if anyone
	authFailures int
}

func (s *session) Reset() {
	s.from, s.rcpts = "", nil
	if s.cc != nil {
		s.cc.transactionDone()
	}
}

func (s *session) Logout() error { return nil }

// secure reports whether the session is TLS (STARTTLS done, or an
// implicit-TLS listener). go-smtp cannot tell: TLS is below the line shim.
func (s *session) secure() bool {
	if s.lc == nil {
		return false
	}
	_, ok := s.lc.tlsState()
	return ok
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	remote := s.conn.Conn().RemoteAddr()
	if s.srv.cfg.Auth.Mode == AuthRequired && s.authUser == "" {
		s.srv.log.Warn("mail refused: not logged in (auth.mode: required)", "remote_addr", remote.String(), "mail_from", from)
		return errAuthRequired
	}
	if !allowsAddress(s.srv.cfg.Policy.Senders, from) {
		s.srv.log.Warn("mail refused: sender not on smtp.allow_senders", "remote_addr", remote.String(), "mail_from", from)
		return errSenderDenied
	}
	if !s.srv.clients.allowMail(remoteAddr(s.conn.Conn())) {
		s.srv.log.Warn("mail refused for now: client over its mail rate", "remote_addr", remote.String(),
			"mails_per_minute", s.srv.cfg.Policy.MailsPerMinute)
		return errRateLimited
	}
	s.from = from
	if s.cc != nil {
		s.cc.beginTransaction()
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !allowsAddress(s.srv.cfg.Policy.Recipients, to) {
		s.srv.log.Warn("recipient refused: not on smtp.allow_recipients (edgesink relays nothing)",
			"remote_addr", s.conn.Conn().RemoteAddr().String(), "rcpt_to", to)
		return errRecipientDenied
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// Data reads the whole message, extracts the alert and returns only when the
// handler has decided its fate; go-smtp turns the result into the reply.
func (s *session) Data(r io.Reader) (err error) {
	defer func() { s.srv.observer().Replied(replyCode(err)) }()
	start := time.Now()
	if s.cc != nil {
		s.cc.startData(s.srv.cfg.DataTimeout)
	}
	remote := s.conn.Conn().RemoteAddr().String()
	log := s.srv.log.With("remote_addr", remote, "mail_from", s.from)

	var raw []byte
	var held int64
	if s.lc != nil && s.lc.capturingData() {
		// The line shim took the message in whole runs (see capture.go);
		// go-smtp's reader, which goes a byte at a time, only sees the end.
		raw, held, err = s.lc.capturedMessage(r)
	} else {
		raw, held, err = s.srv.readMessage(r)
	}
	defer s.srv.buffered.Add(-held)
	defer recycleBuffer(raw)
	if err != nil {
		switch {
		case errors.Is(err, smtp.ErrDataTooLarge):
			log.Warn("mail refused: message too large", "max_bytes", s.srv.cfg.MaxMessageBytes)
			return smtp.ErrDataTooLarge
		case errors.Is(err, errMemoryFull):
			log.Warn("mail refused for now: too much mail in transfer at once", "max_memory", s.srv.cfg.MaxMemory)
			return errBusy
		}
		log.Warn("mail refused: reading message failed", "err", err)
		return errReadFailed
	}

	if err := checkShape(raw, s.srv.cfg.MaxHeaderBytes, s.srv.cfg.MaxMIMEParts); err != nil {
		log.Warn("mail refused: "+err.(*smtp.SMTPError).Message, "size", len(raw))
		return err
	}

	helo := s.conn.Hostname()
	if s.lc != nil && s.lc.heloWasEmpty() {
		helo = ""
	}
	alert, err := extract.Extract(raw, extract.Envelope{
		ReceivedAt: start,
		RemoteAddr: remote,
		Helo:       helo,
		MailFrom:   s.from,
		RcptTo:     s.rcpts,
		AuthUser:   s.authUser,
	})
	if err != nil {
		log.Warn("mail refused: no usable content", "size", len(raw), "parse_errors", alert.ParseErrors)
		return errNoContent
	}

	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.DeliveryTimeout)
	defer cancel()
	if err := s.srv.handler.Handle(sink.WithRawMail(ctx, raw), alert); err != nil {
		reply := replyFor(err)
		log.Error("alert not delivered", "id", alert.ID, "device", alert.Device,
			"subject", alert.Subject, "reply", reply.Code, "err", err)
		return reply
	}

	attrs := []any{"id", alert.ID, "device", alert.Device, "subject", alert.Subject,
		"size", alert.Size, "attachments", len(alert.Attachments)}
	if o, ok := s.srv.handler.(Outputs); ok {
		attrs = append(attrs, "outputs", o.Outputs())
	}
	if len(alert.ParseErrors) > 0 {
		attrs = append(attrs, "parse_errors", len(alert.ParseErrors))
	}
	attrs = append(attrs, "took", time.Since(start).Round(time.Microsecond))
	log.Info("alert accepted", attrs...)
	return nil
}

// readSlack is the room beyond MaxMessageBytes that readMessage needs to see
// go-smtp report an oversize message.
const readSlack = 4 << 10

var errMemoryFull = errors.New("sink: memory budget for mail in transfer used up")

// readMessage reads a message while holding its size against the server's
// memory budget, so many devices sending large mail at once get 451 instead
// of exhausting a small board's memory. held is what the caller must give
// back once it no longer needs raw.
func (s *Server) readMessage(r io.Reader) (raw []byte, held int64, err error) {
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if buf, err = s.growBuffer(buf, &held); err != nil {
				return nil, held, err
			}
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, held, nil
		}
		if err != nil {
			return nil, held, err
		}
	}
}

// growBuffer makes room in a message buffer, held against the memory
// budget (*held is what it holds so far): it doubles, as append would, but
// never past what the largest allowed message needs, so the budget counts
// real need.
func (s *Server) growBuffer(buf []byte, held *int64) ([]byte, error) {
	grow := min(max(cap(buf), firstBuffer), int(s.cfg.MaxMessageBytes)+readSlack-cap(buf))
	if grow <= 0 {
		grow = readSlack
	}
	if s.buffered.Add(int64(grow)) > s.cfg.MaxMemory {
		s.buffered.Add(-int64(grow))
		return buf, errMemoryFull
	}
	*held += int64(grow)
	if cap(buf) == 0 && grow == firstBuffer {
		if p, ok := firstBuffers.Get().(*[]byte); ok {
			return (*p)[:0], nil
		}
	}
	nb := make([]byte, len(buf), cap(buf)+grow)
	copy(nb, buf)
	return nb, nil
}

// firstBuffer is a message buffer's first size: a whole alert of text, the
// first part of one with pictures.
const firstBuffer = 16 << 10

// firstBuffers recycles first buffers from one mail to the next: most
// alerts fit in one, and a new one per mail was the largest allocation of
// the whole path (make bench, 4 KiB mails).
var firstBuffers sync.Pool // of *[]byte

// recycleBuffer hands a message buffer back once nothing refers to it:
// the alert and everything after extraction hold copies (Extract's test
// TestAlertOwnsItsBytes checks that it keeps nothing of it).
func recycleBuffer(buf []byte) {
	if cap(buf) == firstBuffer {
		buf = buf[:0]
		firstBuffers.Put(&buf)
	}
}

// captureBudget is what lets the line shim capture DATA (capture.go): the
// server's budget, or nil when tests compare with go-smtp's own reader.
func (s *Server) captureBudget() bufferBudget {
	if s.noCapture {
		return nil
	}
	return s
}

// releaseBuffer gives back what a message buffer held.
func (s *Server) releaseBuffer(held int64) { s.buffered.Add(-held) }

var (
	errBusy = &smtp.SMTPError{
		Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "Too much mail in transfer, try again later",
	}
	errReadFailed = &smtp.SMTPError{
		Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Error reading message, try again later",
	}
	errNoContent = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has no usable content (no subject, text or attachment)",
	}
	errOutputsDown = &smtp.SMTPError{
		Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 0},
		Message: "Alert not delivered, outputs unavailable; try again later",
	}
	errOutputsRefused = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 3, 0},
		Message: "Alert refused by an output",
	}
)

var errStorageFailed = &smtp.SMTPError{
	Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
	Message: "Local problem storing the alert, try again later",
}

var errStorageFull = &smtp.SMTPError{
	Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
	Message: "Insufficient storage, try again later",
}

// replyFor translates a handler error into the SMTP reply the device gets.
// Details stay in the log: devices only need to know whether to retry.
func replyFor(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	if errors.Is(err, sink.ErrStorageFull) {
		return errStorageFull
	}
	if errors.Is(err, sink.ErrStorageFailed) {
		return errStorageFailed
	}
	if sink.Temporary(err) {
		return errOutputsDown
	}
	return errOutputsRefused
}
