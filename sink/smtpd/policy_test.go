package smtpd_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestForeignNetworkRefused: a client outside smtp.allow_networks is told
// 554 5.7.1 instead of the greeting and disconnected; one inside is served
// at the same time.
func TestForeignNetworkRefused(t *testing.T) {
	rec := &recorder{}
	cfg := smtpd.Config{Policy: smtpd.Policy{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}
	_, addr := startServer(t, cfg, rec)

	foreign := dialFrom(t, "127.0.0.2", addr)
	code, text := foreign.reply()
	if code != 554 || !strings.HasPrefix(text, "5.7.1 ") || !strings.Contains(text, "127.0.0.2") {
		t.Errorf("foreign client got %d %q, want 554 5.7.1 naming its address", code, text)
	}
	if !foreign.closed() {
		t.Error("foreign client still connected")
	}

	local := dial(t, addr)
	local.cmd("EHLO cam", 250)
	if code, text := local.mail("cam@cams.lan", simpleMail); code != 250 {
		t.Errorf("allowed client: %d %s", code, text)
	}
	if n := len(rec.got()); n != 1 {
		t.Errorf("%d alerts, want 1", n)
	}
}

// TestSenderAndRecipientLists: senders and recipients off the lists get
// 550 5.7.1, a relay attempt to a foreign domain included; the session goes
// on and an allowed transaction still works.
func TestSenderAndRecipientLists(t *testing.T) {
	rec := &recorder{}
	cfg := smtpd.Config{Policy: smtpd.Policy{Senders: []string{"@cams.lan", "ups@rack.lan"},
		Recipients: []string{"alerts@edgesink.lan", "@edgesink.lan"}}}
	_, addr := startServer(t, cfg, rec)
	c := dial(t, addr)
	c.cmd("EHLO cam", 250)
	for _, tc := range []struct {
		line string
		code int
	}{
		{"MAIL FROM:<spam@evil.example>", 550},
		{"MAIL FROM:<nas@rack.lan>", 550},
		{"MAIL FROM:<>", 550},
		{"MAIL FROM:<Garage@CAMS.lan>", 250},
		{"RCPT TO:<victim@gmail.com>", 550},
		{"RCPT TO:<alerts@edgesink.lan.evil.example>", 550},
		{"RCPT TO:<ops@EDGESINK.LAN>", 250},
		{"RSET", 250},
		{"MAIL FROM:<ups@rack.lan>", 250},
		{"RCPT TO:<alerts@edgesink.lan>", 250},
	} {
		text := c.cmd(tc.line, tc.code)
		if tc.code == 550 && !strings.HasPrefix(text, "5.7.1 ") {
			t.Errorf("%s: %q, want enhanced code 5.7.1", tc.line, text)
		}
	}
	c.cmd("DATA", 354)
	c.send(simpleMail + ".\r\n")
	c.expect(250)
	if got := rec.got(); len(got) != 1 || got[0].MailFrom != "ups@rack.lan" || strings.Join(got[0].RcptTo, ",") != "alerts@edgesink.lan" {
		t.Errorf("alerts: %+v", got)
	}
}

// TestPerAddressConnectionCap: one address's connections over the cap get
// 421 4.7.0; another address is unaffected; a closed connection frees its
// place.
func TestPerAddressConnectionCap(t *testing.T) {
	_, addr := startServer(t, smtpd.Config{Policy: smtpd.Policy{MaxConnectionsPerIP: 2}}, &recorder{})
	first := dial(t, addr)
	dial(t, addr)
	third := dialFrom(t, "127.0.0.1", addr)
	if code, text := third.reply(); code != 421 || !strings.HasPrefix(text, "4.7.0 ") {
		t.Errorf("third connection: %d %q, want 421 4.7.0", code, text)
	}
	other := dialFrom(t, "127.0.0.3", addr)
	other.expect(220)

	first.cmd("QUIT", 221)
	first.closed()
	// The server notices the close asynchronously; retry briefly.
	for i := 0; ; i++ {
		c := dialFrom(t, "127.0.0.1", addr)
		code, _ := c.reply()
		if code == 220 {
			break
		}
		if i == 50 {
			t.Fatalf("no place freed after QUIT: %d", code)
		}
		c.closed()
	}
}

// TestMailRate: one address's mails beyond its rate get 450 4.7.1 (retry
// later), others are unaffected.
func TestMailRate(t *testing.T) {
	_, addr := startServer(t, smtpd.Config{Policy: smtpd.Policy{MailsPerMinute: 3}}, &recorder{})
	c := dial(t, addr)
	c.cmd("EHLO cam", 250)
	for range 3 {
		c.cmd("MAIL FROM:<cam@cams.lan>", 250)
		c.cmd("RSET", 250)
	}
	if text := c.cmd("MAIL FROM:<cam@cams.lan>", 450); !strings.HasPrefix(text, "4.7.1 ") {
		t.Errorf("over the rate: %q, want 4.7.1", text)
	}
	other := dialFrom(t, "127.0.0.4", addr)
	other.expect(220)
	other.cmd("EHLO nas", 250)
	other.cmd("MAIL FROM:<nas@rack.lan>", 250)
}

func TestPolicyValidate(t *testing.T) {
	for _, bad := range [][]string{{""}, {"a@b@c"}, {"<cam@cams.lan>"}, {"cam @cams.lan"}} {
		if err := (smtpd.Policy{Senders: bad}).Validate(); err == nil {
			t.Errorf("Senders %q: no error", bad)
		}
	}
	if err := (smtpd.Policy{Recipients: []string{"alerts@edgesink.lan", "@lan", "cams.lan"}}).Validate(); err != nil {
		t.Errorf("good lists: %v", err)
	}
}
