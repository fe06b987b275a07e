package smtpd_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestDataTimeoutBoundsTransfer: a device that keeps trickling message
// lines, each well within the read timeout, is cut off once the whole
// transfer takes longer than the DATA timeout.
func TestDataTimeoutBoundsTransfer(t *testing.T) {
	_, addr := startServer(t, smtpd.Config{ReadTimeout: time.Minute, DataTimeout: 300 * time.Millisecond}, &recorder{})
	c := dial(t, addr)
	c.cmd("EHLO cam", 250)
	c.cmd("MAIL FROM:<cam@cams.lan>", 250)
	c.cmd("RCPT TO:<a@b>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: slow\r\n\r\n")
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // longer than the trickle
		for {
			if _, err := c.r.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 30; i++ { // 3 s of lines, 100 ms apart
		select {
		case <-ended:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.conn.Write([]byte("line\r\n")); err != nil {
			return
		}
	}
	t.Fatal("a transfer of 3 s went on past a DATA timeout of 300 ms")
}

// TestShutdownLetsOpenTransactionFinish: a device between MAIL and DATA
// when the server starts draining may finish its mail; only then is its
// session ended.
func TestShutdownLetsOpenTransactionFinish(t *testing.T) {
	rec := &recorder{}
	s, addr := startServer(t, smtpd.Config{}, rec)
	c := dial(t, addr)
	c.cmd("EHLO cam", 250)
	c.cmd("MAIL FROM:<cam@cams.lan>", 250)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the drain reaches the session
	c.cmd("RCPT TO:<a@b>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMail + ".\r\n")
	if text := c.expect(250); !strings.Contains(text, "2.0.0") {
		t.Errorf("250 %q", text)
	}
	c.expect(421)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if n := len(rec.got()); n != 1 {
		t.Fatalf("%d alerts delivered, want 1", n)
	}
}

// TestServeAfterShutdown: a Serve that starts only after Shutdown (or
// Close) has begun returns at once instead of serving a listener nobody
// will close; serve's goroutine and a stopping edgesink would wait on it
// for ever.
func TestServeAfterShutdown(t *testing.T) {
	for _, stop := range []string{"Shutdown", "Close"} {
		s, err := smtpd.New(smtpd.Config{}, &recorder{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if stop == "Shutdown" {
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		} else {
			_ = s.Close()
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(l) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after %s: %v", stop, err)
			}
		case <-time.After(5 * time.Second):
			_ = l.Close()
			t.Fatalf("Serve after %s did not return", stop)
		}
	}
}
