package smtpd

import (
	"context"
	"time"
)

// SetAuthSleep replaces the wait after a failed login, before Serve: tests
// record the delays instead of waiting them.
func (s *Server) SetAuthSleep(sleep func(context.Context, time.Duration)) { s.sleep = sleep }
