package smtpd_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink/smtpd"
)

// startTLSOn upgrades a raw client with STARTTLS, as a device does, and
// returns it speaking over TLS.
func (c *client) startTLS() {
	c.t.Helper()
	c.cmd("STARTTLS", 220)
	tc := tls.Client(c.conn, clientTLS(0))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// dialTLS connects to an implicit-TLS listener and reads the greeting.
func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, clientTLS(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect(220)
	return c
}

// TestBareLFInsideTLS: a device that ends its lines, and its message, with
// a bare LF gets its 250 inside TLS, on the STARTTLS and on the implicit-TLS
// listener alike, and gets no second STARTTLS offer once secure.
func TestBareLFInsideTLS(t *testing.T) {
	_, plain, implicit, rec := tlsServer(t, tls.VersionTLS12, smtpd.Auth{})
	for _, tt := range []struct {
		name string
		dial func(t *testing.T) *client
	}{
		{"starttls", func(t *testing.T) *client {
			c := dial(t, plain)
			c.send("EHLO cam\n")
			if text := c.expect(250); !strings.Contains(text, "STARTTLS") {
				t.Fatalf("STARTTLS not offered: %q", text)
			}
			c.startTLS()
			return c
		}},
		{"implicit", func(t *testing.T) *client { return dialTLS(t, implicit) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rec.got())
			c := tt.dial(t)
			c.send("EHLO cam\n")
			if text := c.expect(250); strings.Contains(text, "STARTTLS") {
				t.Errorf("STARTTLS offered inside TLS: %q", text)
			}
			c.send("MAIL FROM:<cam@cams.lan>\n")
			c.expect(250)
			c.send("RCPT TO:<alerts@edgesink.lan>\n")
			c.expect(250)
			c.send("DATA\n")
			c.expect(354)
			c.send("Subject: motion " + tt.name + "\n\nmotion on ch1\n.\n")
			c.expect(250)
			c.send("STARTTLS\n")
			c.expect(502)
			c.send("QUIT\n")
			c.expect(221)
			got := rec.got()
			if len(got) != before+1 || got[before].Subject != "motion "+tt.name {
				t.Fatalf("alerts %+v", got)
			}
		})
	}
}

// TestErrorCapInsideTLS: the error cap counts replies inside TLS as outside.
func TestErrorCapInsideTLS(t *testing.T) {
	cert, _, err := smtpd.SelfSignedCertificate(filepath.Join(t.TempDir(), "tls"), "edgesink.test")
	if err != nil {
		t.Fatal(err)
	}
	s, plain := startServer(t, smtpd.Config{TLS: cert.TLSConfig(tls.VersionTLS12), MaxErrors: 3}, &recorder{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.ServeTLS(l) }()
	for name, dial := range map[string]func(t *testing.T) *client{
		"starttls": func(t *testing.T) *client { c := dial(t, plain); c.cmd("EHLO x", 250); c.startTLS(); return c },
		"implicit": func(t *testing.T) *client { return dialTLS(t, l.Addr().String()) },
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t)
			c.send("EHLO scanner\n")
			c.expect(250)
			for i := range 2 {
				c.send(fmt.Sprintf("FROB %d\n", i))
				c.expect(500)
			}
			c.send("XYZZ Y\n")
			c.expect(500)
			if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.7.0 Too many errors") {
				t.Errorf("after the 3rd error: %d %q, want 421 4.7.0", code, text)
			}
			if !c.closed() {
				t.Error("connection still open")
			}
		})
	}
}

// TestSTARTTLSInjection: commands pipelined in the clear after STARTTLS
// are dropped, never read as if they came over TLS (CVE-2011-0411), and
// a transaction begun in the clear does not survive the upgrade.
func TestSTARTTLSInjection(t *testing.T) {
	_, plain, _, _ := tlsServer(t, tls.VersionTLS12, smtpd.Auth{})
	c := dial(t, plain)
	c.cmd("EHLO x", 250)
	c.cmd("MAIL FROM:<before@tls>", 250)
	c.send("STARTTLS\r\nMAIL FROM:<evil@injected>\r\n")
	c.expect(220)
	tc := tls.Client(c.conn, clientTLS(0))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.cmd("EHLO x", 250)
	// Neither the injected MAIL nor the one from before TLS stands.
	if text := c.cmd("RCPT TO:<alerts@edgesink.lan>", 502); !strings.Contains(text, "MAIL") {
		t.Errorf("RCPT after STARTTLS: %q, want 502 missing MAIL", text)
	}
}

// TestCommandReplies: every command of the seed list, as a person with
// telnet sees it: reply code and enhanced code.
func TestCommandReplies(t *testing.T) {
	cert, _, err := smtpd.SelfSignedCertificate(filepath.Join(t.TempDir(), "tls"), "edgesink.test")
	if err != nil {
		t.Fatal(err)
	}
	withTLS := smtpd.Config{TLS: cert.TLSConfig(tls.VersionTLS12), Auth: smtpd.Auth{Mode: smtpd.AuthOptional},
		Policy: smtpd.Policy{Recipients: []string{"alerts@edgesink.lan"}}}
	type step struct {
		send     string
		code     int
		enhanced string // prefix of the reply text; "" for none checked
		has      string // the text contains this
		hasNot   string
	}
	mail := "Subject: x\r\n\r\nmotion\r\n"
	for _, tt := range []struct {
		name  string
		cfg   smtpd.Config
		steps []step
	}{
		{"tls and auth offered", withTLS, []step{
			{send: "HELP", code: 214, enhanced: "2.0.0", has: "HELO EHLO STARTTLS MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT"},
			{send: "HELO cam", code: 250, enhanced: "2.0.0"},
			{send: "EHLO cam", code: 250, has: "STARTTLS", hasNot: "AUTH"},
			{send: "NOOP", code: 250, enhanced: "2.0.0"},
			{send: "VRFY root", code: 252, enhanced: "2.5.0"},
			{send: "EXPN staff", code: 502, enhanced: "5.5.1"},
			{send: "TURN", code: 502, enhanced: "5.5.1"},
			{send: "AUTH PLAIN", code: 523, enhanced: "5.7.10"},
			{send: "MAIL FROM:<cam@cams.lan>", code: 250, enhanced: "2.0.0"},
			{send: "RCPT TO:<someone@example.com>", code: 550, enhanced: "5.7.1"},
			{send: "RCPT TO:<alerts@edgesink.lan>", code: 250, enhanced: "2.0.0"},
			{send: "RSET", code: 250, enhanced: "2.0.0"},
			{send: "MAIL FROM:<cam@cams.lan>", code: 250},
			{send: "RCPT TO:<alerts@edgesink.lan>", code: 250},
			{send: "DATA", code: 354},
			{send: mail + ".", code: 250, enhanced: "2.0.0"},
			{send: "MAIL FROM:<cam@cams.lan>", code: 250},
			{send: "RCPT TO:<alerts@edgesink.lan>", code: 250},
			{send: fmt.Sprintf("BDAT %d LAST\r\n%s", len(mail), strings.TrimSuffix(mail, "\r\n")), code: 250, enhanced: "2.0.0"},
			{send: "help data", code: 214, enhanced: "2.0.0"},
			{send: "QUIT", code: 221, enhanced: "2.0.0"},
		}},
		{"plain, no auth", smtpd.Config{}, []step{
			{send: "HELP", code: 214, enhanced: "2.0.0", hasNot: "STARTTLS"},
			{send: "EHLO cam", code: 250, hasNot: "STARTTLS"},
			{send: "STARTTLS", code: 502, enhanced: "5.5.1"},
			{send: "AUTH PLAIN", code: 504, enhanced: "5.5.4"},
			{send: "QUIT", code: 221, enhanced: "2.0.0"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startServer(t, tt.cfg, &recorder{})
			c := dial(t, addr)
			for _, s := range tt.steps {
				c.send(s.send + "\r\n")
				code, text := c.reply()
				first := strings.SplitN(s.send, "\r\n", 2)[0]
				if code != s.code || !strings.HasPrefix(text, s.enhanced) {
					t.Errorf("%q: %d %q, want %d %s", first, code, text, s.code, s.enhanced)
				}
				if s.has != "" && !strings.Contains(text, s.has) {
					t.Errorf("%q: %q lacks %q", first, text, s.has)
				}
				if s.hasNot != "" && strings.Contains(text, s.hasNot) {
					t.Errorf("%q: %q has %q", first, text, s.hasNot)
				}
			}
		})
	}
}
