package smtpd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgesink/edgesink/sink/smtpd"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func hashOf(t *testing.T, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func authConfig(t *testing.T, mode string, insecure bool) smtpd.Config {
	return smtpd.Config{Auth: smtpd.Auth{Mode: mode, AllowInsecure: insecure,
		Users: map[string]string{"cam-garage": hashOf(t, "s3cret")}}}
}

// TestAuthReplies: every AUTH outcome over raw SMTP, with its exact code.
func TestAuthReplies(t *testing.T) {
	tests := []struct {
		name string
		cfg  smtpd.Config
		run  func(c *client)
	}{
		{"AUTH before EHLO", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00s3cret"), 502)
		}},
		{"AUTH without TLS where not allowed", authConfig(t, smtpd.AuthRequired, false), func(c *client) {
			if ehlo := c.cmd("EHLO cam", 250); strings.Contains(ehlo, "AUTH") {
				t.Errorf("AUTH advertised without TLS: %q", ehlo)
			}
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00s3cret"), 523)
			c.cmd("MAIL FROM:<cam@cams.lan>", 530)
		}},
		{"PLAIN, right password", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			if ehlo := c.cmd("EHLO cam", 250); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
				t.Errorf("EHLO does not offer AUTH PLAIN LOGIN: %q", ehlo)
			}
			c.cmd("MAIL FROM:<cam@cams.lan>", 530)
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00s3cret"), 235)
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00s3cret"), 503)
			c.cmd("MAIL FROM:<cam@cams.lan>", 250)
		}},
		{"PLAIN, challenge then response", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH PLAIN", 334)
			c.cmd(b64("cam-garage\x00cam-garage\x00s3cret"), 235)
		}},
		{"PLAIN, identity not the user", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH PLAIN "+b64("admin\x00cam-garage\x00s3cret"), 535)
		}},
		{"LOGIN, both steps", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			if got := c.cmd("AUTH LOGIN", 334); got != b64("Username:") {
				t.Errorf("first challenge %q", got)
			}
			if got := c.cmd(b64("cam-garage"), 334); got != b64("Password:") {
				t.Errorf("second challenge %q", got)
			}
			c.cmd(b64("s3cret"), 235)
		}},
		{"LOGIN, user as initial response", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH LOGIN "+b64("cam-garage"), 334)
			c.cmd(b64("s3cret"), 235)
		}},
		{"LOGIN cancelled", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH LOGIN", 334)
			c.cmd("*", 501)
		}},
		{"wrong password, unknown user", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			if got := c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00wrong"), 535); !strings.HasPrefix(got, "5.7.8 ") {
				t.Errorf("535 without 5.7.8: %q", got)
			}
			c.cmd("AUTH LOGIN "+b64("nobody"), 334)
			c.cmd(b64("s3cret"), 535)
			c.cmd("MAIL FROM:<cam@cams.lan>", 530)
		}},
		{"third failure hangs up", authConfig(t, smtpd.AuthRequired, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00a"), 535)
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00b"), 535)
			c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00c"), 421)
			if !c.closed() {
				t.Error("connection still open after the third failure")
			}
		}},
		{"unknown mechanism", authConfig(t, smtpd.AuthOptional, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH CRAM-MD5", 504)
		}},
		{"optional: mail without AUTH", authConfig(t, smtpd.AuthOptional, true), func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("MAIL FROM:<cam@cams.lan>", 250)
		}},
		{"optional without users: any login", smtpd.Config{Auth: smtpd.Auth{Mode: smtpd.AuthOptional, AllowInsecure: true}}, func(c *client) {
			c.cmd("EHLO cam", 250)
			c.cmd("AUTH PLAIN "+b64("\x00whatever\x00the device has"), 235)
		}},
		{"off: not offered", smtpd.Config{Auth: smtpd.Auth{AllowInsecure: true}}, func(c *client) {
			if ehlo := c.cmd("EHLO cam", 250); strings.Contains(ehlo, "AUTH") {
				t.Errorf("AUTH advertised with auth off: %q", ehlo)
			}
			c.cmd("MAIL FROM:<cam@cams.lan>", 250)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startServer(t, tt.cfg, &recorder{})
			c := dial(t, addr)
			c.t = t
			tt.run(c)
		})
	}
}

// TestAuthFailureDelayGrows: each failed login of a session is answered
// after a longer wait than the one before (1 s, 2 s, 3 s), the wait comes
// before the reply, and a new session starts again at 1 s. The waits are
// recorded, not slept.
func TestAuthFailureDelayGrows(t *testing.T) {
	var mu sync.Mutex
	var waits []time.Duration
	recorded := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
	s, err := smtpd.New(authConfig(t, smtpd.AuthRequired, true), &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetAuthSleep(func(_ context.Context, d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()

	c := dial(t, l.Addr().String())
	c.cmd("EHLO cam", 250)
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	for i, code := range []int{535, 535, 421} {
		c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00wrong"), code)
		if got := recorded(); !slices.Equal(got, want[:i+1]) {
			t.Fatalf("waits after failure %d: %v, want %v", i+1, got, want[:i+1])
		}
	}
	c2 := dial(t, l.Addr().String())
	c2.cmd("EHLO cam", 250)
	c2.cmd("AUTH LOGIN "+b64("nobody"), 334)
	c2.cmd(b64("s3cret"), 535)
	c2.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00s3cret"), 235)
	if got := recorded(); !slices.Equal(got, append(want, time.Second)) {
		t.Errorf("waits with a second session: %v, want %v", got, append(want, time.Second))
	}
}

// TestAuthUserIsDevice: the login name, not the envelope sender, names the
// device.
func TestAuthUserIsDevice(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, authConfig(t, smtpd.AuthRequired, true), rec)
	c := dial(t, addr)
	c.cmd("EHLO cam", 250)
	c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00s3cret"), 235)
	if code, text := c.mail("admin@example.com", simpleMail); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	if got := rec.got(); len(got) != 1 || got[0].Device != "cam-garage" {
		t.Errorf("alerts %+v, want device cam-garage", got)
	}
}

func TestAuthValidate(t *testing.T) {
	for _, a := range []smtpd.Auth{
		{Mode: "sometimes"},
		{Mode: smtpd.AuthRequired},
		{Mode: smtpd.AuthOptional, Users: map[string]string{"cam": "plaintext"}},
		{Mode: smtpd.AuthOptional, Users: map[string]string{"": hashOf(t, "x")}},
	} {
		if err := a.Validate(); err == nil {
			t.Errorf("%+v: no error", a)
		}
	}
}

// TestAuthLogsNoPassword: logins are logged, with the user and the reason,
// never with the password.
func TestAuthLogsNoPassword(t *testing.T) {
	var buf safeBuffer
	s, err := smtpd.New(authConfig(t, smtpd.AuthRequired, true), &recorder{}, slog.New(slog.NewJSONHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.SetAuthSleep(func(context.Context, time.Duration) {})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	c := dial(t, l.Addr().String())
	c.cmd("EHLO cam", 250)
	c.cmd("AUTH PLAIN "+b64("\x00cam-garage\x00Wr0ngPassw0rd"), 535)
	c.cmd("AUTH LOGIN "+b64("cam-garage"), 334)
	c.cmd(b64("s3cret"), 235)
	c.cmd("QUIT", 221)
	_ = s.Close()
	logged := buf.String()
	for _, want := range []string{`"msg":"login failed"`, `"user":"cam-garage"`, `"reason":"wrong password"`, `"msg":"client logged in"`} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %s:\n%s", want, logged)
		}
	}
	for _, secret := range []string{"Wr0ngPassw0rd", "s3cret", b64("s3cret")} {
		if strings.Contains(logged, secret) {
			t.Errorf("log shows a password (%q):\n%s", secret, logged)
		}
	}
}

// safeBuffer is a bytes.Buffer for a logger written from several goroutines.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
