package smtpd

import (
	"context"
	"time"
)

// SetAuthSleep replaces the wait after a failed login, before Serve: tests
// record the delays instead of waiting them.
func (s *Server) SetAuthSleep(sleep func(context.Context, time.Duration)) { s.sleep = sleep }

// ReadDataInGoSMTP turns the line shim's DATA capture off, before Serve:
// tests compare it with go-smtp's own DATA reader.
func (s *Server) ReadDataInGoSMTP() { s.noCapture = true }
