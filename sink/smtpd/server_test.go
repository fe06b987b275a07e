package smtpd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// recorder is a Handler that keeps every alert and fails on demand.
type recorder struct {
	mu     sync.Mutex
	alerts []*sink.Alert
	fail   func(ctx context.Context, a *sink.Alert) error
}

func (r *recorder) Handle(ctx context.Context, a *sink.Alert) error {
	if r.fail != nil {
		if err := r.fail(ctx, a); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, a)
	return nil
}

func (r *recorder) got() []*sink.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sink.Alert(nil), r.alerts...)
}

type tempErr struct{}

func (tempErr) Error() string   { return "broker down" }
func (tempErr) Temporary() bool { return true }

// startServer runs a sink on 127.0.0.1:0 and returns its address.
func startServer(t *testing.T, cfg smtpd.Config, h sink.Handler) (*smtpd.Server, string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(smtptest.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := smtpd.New(cfg, h, log)
	if err != nil {
		t.Fatal(err)
	}
	s.SetAuthSleep(func(context.Context, time.Duration) {}) // TestAuthFailureDelayGrows checks the waits
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, l.Addr().String()
}

// client speaks raw SMTP so tests control every byte.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", addr)
	c.expect(220)
	return c
}

// dialFrom connects from local (another loopback address such as
// 127.0.0.2 plays a foreign host) and reads nothing yet.
func dialFrom(t *testing.T, local, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(raw)); err != nil {
		c.t.Fatalf("write %q: %v", raw, err)
	}
}

// reply reads one (possibly multi-line) reply and returns its code and text.
func (c *client) reply() (int, string) {
	c.t.Helper()
	var text []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (so far %q)", err, text)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			c.t.Fatalf("short reply line %q", line)
		}
		text = append(text, line[4:])
		if line[3] == ' ' {
			var code int
			fmt.Sscanf(line[:3], "%d", &code)
			return code, strings.Join(text, "\n")
		}
	}
}

func (c *client) expect(code int) string {
	c.t.Helper()
	got, text := c.reply()
	if got != code {
		c.t.Fatalf("reply %d %q, want %d", got, text, code)
	}
	return text
}

func (c *client) cmd(line string, code int) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code)
}

func (c *client) closed() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil
}

const simpleMail = "From: cam@cams.lan\r\nSubject: Motion\r\n\r\nMotion on camera 1.\r\n"

// mail runs one transaction and returns the final reply code.
func (c *client) mail(from string, body string) (int, string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250)
	c.cmd("RCPT TO:<alerts@edgesink.lan>", 250)
	c.cmd("DATA", 354)
	c.send(body + ".\r\n")
	return c.reply()
}

func TestSessionHappyPath(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, smtpd.Config{}, rec)
	c := dial(t, addr)
	ehlo := c.cmd("EHLO cam.lan", 250)
	if !strings.Contains(ehlo, "PIPELINING") || strings.Contains(ehlo, "AUTH") || strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO capabilities: %q", ehlo)
	}
	c.cmd("NOOP", 250)
	c.cmd("MAIL FROM:<Cam-1@cams.lan>", 250)
	c.cmd("RCPT TO:<alerts@edgesink.lan>", 250)
	c.cmd("RCPT TO:<ops@edgesink.lan>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMail + "..dot-stuffed line\r\n.\r\n")
	c.expect(250)
	c.cmd("RSET", 250)
	c.cmd("QUIT", 221)

	got := rec.got()
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	a := got[0]
	if a.Helo != "cam.lan" || a.MailFrom != "Cam-1@cams.lan" || a.Device != "cam-1" || a.Subject != "Motion" ||
		strings.Join(a.RcptTo, ",") != "alerts@edgesink.lan,ops@edgesink.lan" ||
		!strings.Contains(a.Text, "\n.dot-stuffed line") || !strings.HasPrefix(a.RemoteAddr, "127.0.0.1:") {
		t.Errorf("alert = %+v", a)
	}
}

func TestSessionLegacyClients(t *testing.T) {
	tests := []struct {
		name   string
		script string // whole session, sent at once after the greeting is read
		codes  []int
		text   string
		helo   string
	}{
		{
			name:   "bare LF everywhere, LF.LF end",
			script: "HELO plc\nMAIL FROM:<plc@factory.lan>\nRCPT TO:<a@edgesink.lan>\nDATA\n",
			codes:  []int{250, 250, 250, 354},
			text:   "Pump 2 tripped.\n.leading dot\n",
			helo:   "plc",
		},
		{
			name:   "empty HELO",
			script: "HELO\r\nMAIL FROM:<ups@rack.lan>\r\nRCPT TO:<a@edgesink.lan>\r\nDATA\r\n",
			codes:  []int{250, 250, 250, 354},
			text:   "Pump 2 tripped.\n.leading dot\n",
			helo:   "",
		},
		{
			name:   "empty EHLO with spaces, lower case commands",
			script: "ehlo  \r\nmail from:<ups@rack.lan>\r\nrcpt to:<a@edgesink.lan>\r\ndata\r\n",
			codes:  []int{250, 250, 250, 354},
			text:   "Pump 2 tripped.\n.leading dot\n",
			helo:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startServer(t, smtpd.Config{}, rec)
			c := dial(t, addr)
			// Pipelined in one write, as sloppy stacks do.
			c.send(tt.script)
			for _, code := range tt.codes {
				c.expect(code)
			}
			c.send("Subject: Overcurrent\nFrom: plc@factory.lan\n\nPump 2 tripped.\n..leading dot\n.\n")
			c.expect(250)
			c.send("QUIT\n")
			c.expect(221)
			got := rec.got()
			if len(got) != 1 {
				t.Fatalf("%d alerts", len(got))
			}
			if got[0].Text != tt.text || got[0].Subject != "Overcurrent" || got[0].Helo != tt.helo {
				t.Errorf("alert text %q subject %q helo %q", got[0].Text, got[0].Subject, got[0].Helo)
			}
		})
	}
}

func TestSessionStrictLineEndings(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, smtpd.Config{StrictLineEndings: true, ReadTimeout: 5 * time.Second}, rec)
	c := dial(t, addr)
	c.cmd("HELO plc", 250)
	c.cmd("MAIL FROM:<plc@factory.lan>", 250)
	c.cmd("RCPT TO:<a@edgesink.lan>", 250)
	c.cmd("DATA", 354)
	// In strict mode LF.LF is message content, not the end.
	c.send("Subject: s\n\nline\n.\nmore\r\n.\r\n")
	c.expect(250)
	if got := rec.got(); len(got) != 1 || !strings.Contains(got[0].Text, "line\n.\nmore") {
		t.Fatalf("alerts %+v", got)
	}
}

func TestSessionReplyCodes(t *testing.T) {
	t.Run("552 oversize, connection stays usable", func(t *testing.T) {
		rec := &recorder{}
		_, addr := startServer(t, smtpd.Config{MaxMessageBytes: 1024}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		code, _ := c.mail("cam@cams.lan", simpleMail+strings.Repeat("0123456789abcdef\r\n", 200))
		if code != 552 {
			t.Fatalf("oversize: %d, want 552", code)
		}
		if code, _ := c.mail("cam@cams.lan", simpleMail); code != 250 {
			t.Fatalf("after oversize: %d, want 250", code)
		}
		if n := len(rec.got()); n != 1 {
			t.Fatalf("%d alerts, want 1", n)
		}
	})
	t.Run("452 too many recipients", func(t *testing.T) {
		_, addr := startServer(t, smtpd.Config{MaxRecipients: 2}, &recorder{})
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		c.cmd("MAIL FROM:<a@b>", 250)
		c.cmd("RCPT TO:<1@b>", 250)
		c.cmd("RCPT TO:<2@b>", 250)
		c.cmd("RCPT TO:<3@b>", 452)
	})
	t.Run("500 line too long closes", func(t *testing.T) {
		_, addr := startServer(t, smtpd.Config{MaxLineLength: 1000}, &recorder{})
		c := dial(t, addr)
		c.send("EHLO " + strings.Repeat("x", 3000) + "\r\n")
		c.expect(500)
		if !c.closed() {
			t.Error("connection still open")
		}
	})
	t.Run("5xx bad commands and sequence", func(t *testing.T) {
		_, addr := startServer(t, smtpd.Config{}, &recorder{})
		c := dial(t, addr)
		c.cmd("MAIL FROM:<a@b>", 502) // before HELO
		c.cmd("EHLO x", 250)
		c.cmd("RCPT TO:<a@b>", 502) // before MAIL
		c.cmd("DATA", 502)          // no recipients
		c.cmd("FROB", 500)
		c.cmd("MAIL FROM:<a@b>", 250)
		c.cmd("RCPT TO:no-brackets", 501)
		c.cmd("VRFY root", 252)
		c.cmd("QUIT", 221)
	})
	t.Run("451 when an output is down", func(t *testing.T) {
		rec := &recorder{fail: func(context.Context, *sink.Alert) error { return fmt.Errorf("mqtt: %w", tempErr{}) }}
		_, addr := startServer(t, smtpd.Config{}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		code, text := c.mail("cam@cams.lan", simpleMail)
		if code != 451 || !strings.HasPrefix(text, "4.4.0") || strings.Contains(text, "broker") {
			t.Fatalf("got %d %q, want 451 4.4.0 without internal detail", code, text)
		}
	})
	t.Run("451 when outputs do not answer in time", func(t *testing.T) {
		rec := &recorder{fail: func(ctx context.Context, _ *sink.Alert) error { <-ctx.Done(); return ctx.Err() }}
		_, addr := startServer(t, smtpd.Config{DeliveryTimeout: 100 * time.Millisecond}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		if code, _ := c.mail("cam@cams.lan", simpleMail); code != 451 {
			t.Fatalf("got %d, want 451", code)
		}
	})
	t.Run("452 when the handler has no room", func(t *testing.T) {
		rec := &recorder{fail: func(context.Context, *sink.Alert) error { return fmt.Errorf("spool: %w", sink.ErrStorageFull) }}
		_, addr := startServer(t, smtpd.Config{}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		if code, text := c.mail("cam@cams.lan", simpleMail); code != 452 || !strings.HasPrefix(text, "4.3.1") {
			t.Fatalf("got %d %q, want 452 4.3.1", code, text)
		}
	})
	t.Run("451 4.3.0 when the handler cannot store the alert", func(t *testing.T) {
		rec := &recorder{fail: func(context.Context, *sink.Alert) error {
			return fmt.Errorf("spool: write: %w: %w", sink.ErrStorageFailed, syscall.EROFS)
		}}
		_, addr := startServer(t, smtpd.Config{}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		if code, text := c.mail("cam@cams.lan", simpleMail); code != 451 || !strings.HasPrefix(text, "4.3.0") || strings.Contains(text, "read-only") {
			t.Fatalf("got %d %q, want 451 4.3.0 without internal detail", code, text)
		}
	})
	t.Run("554 when an output refuses for good", func(t *testing.T) {
		rec := &recorder{fail: func(context.Context, *sink.Alert) error { return errors.New("payload too large") }}
		_, addr := startServer(t, smtpd.Config{}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		if code, text := c.mail("cam@cams.lan", simpleMail); code != 554 || !strings.HasPrefix(text, "5.3.0") {
			t.Fatalf("got %d %q, want 554 5.3.0", code, text)
		}
	})
	t.Run("554 no usable content", func(t *testing.T) {
		rec := &recorder{}
		_, addr := startServer(t, smtpd.Config{}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		if code, text := c.mail("ghost@x.lan", "Subject: \r\n\r\n"); code != 554 || !strings.HasPrefix(text, "5.6.0") {
			t.Fatalf("got %d %q, want 554 5.6.0", code, text)
		}
		if len(rec.got()) != 0 {
			t.Fatal("empty mail reached the handler")
		}
	})
	t.Run("451 over the memory budget, released after", func(t *testing.T) {
		rec := &recorder{}
		_, addr := startServer(t, smtpd.Config{MaxMemory: 64 << 10, MaxMessageBytes: 60 << 10}, rec)
		first := dial(t, addr)
		first.cmd("EHLO first", 250)
		first.cmd("MAIL FROM:<cam@cams.lan>", 250)
		first.cmd("RCPT TO:<a@b>", 250)
		first.cmd("DATA", 354)
		// 40 KiB in transfer: the first connection holds 64 KiB of budget.
		first.send(simpleMail + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 640))
		time.Sleep(200 * time.Millisecond)

		second := dial(t, addr)
		second.cmd("EHLO second", 250)
		code, text := second.mail("cam@cams.lan", simpleMail+strings.Repeat(strings.Repeat("y", 62)+"\r\n", 640))
		if code != 451 || !strings.HasPrefix(text, "4.3.1") {
			t.Fatalf("second sender over budget: %d %q, want 451 4.3.1", code, text)
		}
		first.send(".\r\n")
		first.expect(250)
		// The budget is free again.
		if code, _ := second.mail("cam@cams.lan", simpleMail); code != 250 {
			t.Fatalf("after release: %d, want 250", code)
		}
		if n := len(rec.got()); n != 2 {
			t.Fatalf("%d alerts, want 2", n)
		}
	})
	t.Run("421 over the connection cap", func(t *testing.T) {
		_, addr := startServer(t, smtpd.Config{MaxConnections: 1}, &recorder{})
		first := dial(t, addr)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		second := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
		second.expect(421)
		// The first client is unaffected, and its slot is freed on QUIT.
		first.cmd("EHLO x", 250)
		first.cmd("QUIT", 221)
		deadline := time.Now().Add(5 * time.Second)
		for {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "220") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slot not freed: %q", line)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("421 idle timeout", func(t *testing.T) {
		_, addr := startServer(t, smtpd.Config{ReadTimeout: 200 * time.Millisecond}, &recorder{})
		c := dial(t, addr)
		c.expect(421)
	})
	t.Run("BDAT chunk kept byte for byte", func(t *testing.T) {
		rec := &recorder{}
		_, addr := startServer(t, smtpd.Config{}, rec)
		c := dial(t, addr)
		c.cmd("EHLO x", 250)
		c.cmd("MAIL FROM:<cam@cams.lan>", 250)
		c.cmd("RCPT TO:<a@b>", 250)
		body := "Subject: chunked\r\n\r\nline1\nline2\r\n"
		c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
		c.expect(250)
		if got := rec.got(); len(got) != 1 || got[0].Text != "line1\nline2\n" || got[0].Size != len(body) {
			t.Fatalf("alerts %+v", got)
		}
	})
}

// TestShutdownDrains: a mail in delivery when Shutdown starts still gets its
// 250; an idle session is told 421; Shutdown returns once both are done.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	rec := &recorder{fail: func(ctx context.Context, _ *sink.Alert) error {
		entered <- struct{}{}
		<-release
		return nil
	}}
	s, addr := startServer(t, smtpd.Config{}, rec)
	idle := dial(t, addr)
	idle.cmd("EHLO idle", 250)
	busy := dial(t, addr)
	busy.cmd("EHLO busy", 250)
	busy.cmd("MAIL FROM:<cam@cams.lan>", 250)
	busy.cmd("RCPT TO:<a@b>", 250)
	busy.cmd("DATA", 354)
	busy.send(simpleMail + ".\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	idle.expect(421)
	// A device that connects now is told to come back later.
	late := dial421(t, addr)
	if !strings.Contains(late, "shutting down") {
		t.Errorf("new connection during shutdown: %q", late)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v before the mail in delivery finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	busy.expect(250)
	busy.expect(421) // then the session ends
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still listening after Shutdown returned")
	}
	if n := len(rec.got()); n != 1 {
		t.Fatalf("%d alerts delivered, want 1", n)
	}
}

// dial421 connects and returns the 421 greeting line a busy or stopping
// server gives instead of 220.
func dial421(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 ") {
		t.Fatalf("greeting %q, want 421", line)
	}
	return line
}

func TestTemporary(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{tempErr{}, true},
		{fmt.Errorf("wrapped: %w", tempErr{}), true},
		{errors.Join(errors.New("perm"), fmt.Errorf("w: %w", tempErr{})), true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", context.Canceled), true},
	}
	for _, tt := range tests {
		if got := sink.Temporary(tt.err); got != tt.want {
			t.Errorf("Temporary(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []smtpd.Config{
		{MaxMessageBytes: -1},
		{MaxLineLength: 100},
		{ReadTimeout: -time.Second},
		{MaxConnections: -2},
		{MaxMemory: 1 << 20}, // less than the default max message size
	}
	for _, c := range bad {
		if _, err := smtpd.New(c, &recorder{}, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if _, err := smtpd.New(smtpd.Config{}, nil, nil); err == nil {
		t.Error("New with nil handler accepted")
	}
}
