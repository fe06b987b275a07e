package smtpd

// Observer hears what the SMTP server does, for metrics (the status page's
// /metrics). Its methods are called on the sessions' goroutines: they must
// be cheap and never block. Nothing from the mail reaches them.
type Observer interface {
	ConnectionOpened()
	ConnectionClosed()
	TLSStarted()      // a session turned to TLS (STARTTLS or implicit TLS)
	AuthFailed()      // a failed login
	Replied(code int) // the reply to a message (after DATA): 250, 451, 554…
}

// Observe makes the server report to o. Call it before Serve.
func (s *Server) Observe(o Observer) { s.obs = o }

// observer is the Observer in use, one that ignores everything if none.
func (s *Server) observer() Observer {
	if s.obs == nil {
		return nopObserver{}
	}
	return s.obs
}

type nopObserver struct{}

func (nopObserver) ConnectionOpened() {}
func (nopObserver) ConnectionClosed() {}
func (nopObserver) TLSStarted()       {}
func (nopObserver) AuthFailed()       {}
func (nopObserver) Replied(int)       {}

// replyCode is the code go-smtp answers err with (nil: 250).
func replyCode(err error) int {
	if err == nil {
		return 250
	}
	return replyFor(err).Code
}
