package smtpd

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgesink/edgesink/sink/config"
)

// Auth modes.
const (
	AuthOff      = "off"      // AUTH not offered; mail accepted without it
	AuthOptional = "optional" // AUTH offered, not required
	AuthRequired = "required" // MAIL only after a successful AUTH
)

// Auth is how devices log in. Many cameras and printers refuse to send
// until a user name and password are set; some only speak AUTH LOGIN.
type Auth struct {
	Mode string `yaml:"mode"` // AuthOff (default), AuthOptional or AuthRequired
	// Users maps user names to bcrypt hashes ('edgesink hash-password').
	// With AuthOptional and no users, any credentials are accepted: the
	// device only needs the login to succeed.
	Users map[string]string `yaml:"users"`
	// AllowInsecure offers AUTH over plain TCP (without TLS), for legacy
	// devices on a trusted LAN. Otherwise AUTH needs TLS.
	AllowInsecure bool `yaml:"allow_insecure"`
}

// Validate reports a mode or hash that cannot work.
func (a Auth) Validate() error {
	switch a.Mode {
	case "", AuthOff, AuthOptional, AuthRequired:
	default:
		return config.Bad("mode", "%q: want off, optional or required", a.Mode)
	}
	if a.Mode == AuthRequired && len(a.Users) == 0 {
		return config.Bad("users", "auth mode required needs at least one user")
	}
	for user, hash := range a.Users {
		if user == "" {
			return config.Bad("users", "a user with an empty name")
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return config.Bad("users", "%q: password hash is not bcrypt (make one with 'edgesink hash-password'): %v", user, err)
		}
	}
	return nil
}

func (a Auth) offered() bool { return a.Mode == AuthOptional || a.Mode == AuthRequired }

// maxAuthFailures is how many failed logins a session gets before the
// server hangs up; each failure is answered more slowly than the last.
const maxAuthFailures = 3

// authFailureDelay is the wait before the first failure's reply; the n-th
// waits n times as long (authDelay).
const authFailureDelay = time.Second

// authDelay is the wait before the reply to a session's n-th failed login.
func authDelay(n int) time.Duration { return time.Duration(n) * authFailureDelay }

// sleepCtx waits d, or until ctx is done (Close does not wait for a
// session that is making a guesser wait).
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

var (
	errAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errAuthTooMany = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed logins, closing connection"}
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errAuthMechanism = &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4},
		Message: "Unrecognized authentication type"}
	errAuthNeedsTLS = &smtp.SMTPError{Code: 523, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
		Message: "TLS is required"}
)

// dummyHash is compared against for unknown users, so a wrong user name
// takes as long to refuse as a wrong password. A constant: computing one
// at start would cost a Pi Zero about a second. The comparison's result is
// ignored: nothing ever logs in with it.
var dummyHash = []byte("$2a$10$t8L/udNKJMUlhY1ENvyR.ufkE/uTjou6kQXpbY5usGj5qFBKOV1C.")

// authAllowed: AUTH needs TLS, unless auth.allow_insecure.
func (s *session) authAllowed() bool {
	return s.srv.cfg.Auth.offered() && (s.secure() || s.srv.cfg.Auth.AllowInsecure)
}

// AuthMechanisms is go-smtp's AuthSession: what EHLO advertises (EHLO
// leaves AUTH out entirely when the list is empty).
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth is go-smtp's AuthSession: a SASL server for mech.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.srv.cfg.Auth.offered() {
		return nil, errAuthMechanism
	}
	if !s.authAllowed() {
		return nil, errAuthNeedsTLS
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return s.authFailed(user, "authorization identity differs from user")
			}
			return s.login(user, pass)
		}), nil
	case sasl.Login:
		return newLoginServer(s.login), nil
	}
	return nil, errAuthMechanism
}

// login checks one user name and password. The password is never logged.
func (s *session) login(user, pass string) error {
	a := s.srv.cfg.Auth
	hash, known := a.Users[user]
	if len(a.Users) == 0 && a.Mode == AuthOptional {
		known, hash = true, ""
	}
	if !known {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pass))
		return s.authFailed(user, "unknown user")
	}
	if hash != "" && bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil {
		return s.authFailed(user, "wrong password")
	}
	s.authUser = user
	s.srv.log.Info("client logged in", "remote_addr", s.conn.Conn().RemoteAddr().String(), "user", user)
	return nil
}

// authFailed counts a failed login, waits longer each time, and after
// maxAuthFailures hangs up.
func (s *session) authFailed(user, reason string) error {
	s.authFailures++
	s.srv.observer().AuthFailed()
	s.srv.log.Warn("login failed", "remote_addr", s.conn.Conn().RemoteAddr().String(), "user", user,
		"reason", reason, "failures", s.authFailures)
	s.srv.sleep(s.srv.ctx, authDelay(s.authFailures))
	if s.authFailures >= maxAuthFailures {
		if s.lc != nil {
			s.lc.hangUpAfterReply()
		}
		return errAuthTooMany
	}
	return errAuthFailed
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): the server asks "Username:", then
// "Password:", each answered base64-encoded (go-smtp does the base64). A
// client may send the user name as an initial response. go-sasl has only
// the client side.
type loginServer struct {
	authenticate func(user, pass string) error
	step         int // 0: start, 1: user name asked, 2: password asked, 3: done
	user         []byte
}

// Challenges of the LOGIN mechanism, as servers have always sent them.
var (
	loginUserChallenge = []byte("Username:")
	loginPassChallenge = []byte("Password:")
)

func newLoginServer(authenticate func(user, pass string) error) *loginServer {
	return &loginServer{authenticate: authenticate}
}

// Next implements sasl.Server.
func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return loginUserChallenge, false, nil
		}
		l.user, l.step = bytes.Clone(response), 2
		return loginPassChallenge, false, nil
	case 1:
		l.user, l.step = bytes.Clone(response), 2
		return loginPassChallenge, false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(string(l.user), string(response))
	}
	return nil, true, errors.New("sasl login: unexpected response after completion")
}
