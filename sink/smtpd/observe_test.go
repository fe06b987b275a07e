package smtpd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/smtp"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// observed counts what an Observer was told.
type observed struct {
	mu                            sync.Mutex
	opened, closed, tls, authFail int
	replies                       map[int]int
}

func (o *observed) ConnectionOpened() { o.mu.Lock(); o.opened++; o.mu.Unlock() }
func (o *observed) ConnectionClosed() { o.mu.Lock(); o.closed++; o.mu.Unlock() }
func (o *observed) TLSStarted()       { o.mu.Lock(); o.tls++; o.mu.Unlock() }
func (o *observed) AuthFailed()       { o.mu.Lock(); o.authFail++; o.mu.Unlock() }
func (o *observed) Replied(code int)  { o.mu.Lock(); o.replies[code]++; o.mu.Unlock() }

// TestObserverAndRawMail: the Observer hears connections, TLS, failed
// logins and the reply to each mail; the Handler's context carries the
// mail exactly as sent.
func TestObserverAndRawMail(t *testing.T) {
	cert, _, err := smtpd.SelfSignedCertificate(filepath.Join(t.TempDir(), "tls"), "edgesink.test")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var raws [][]byte
	h := sink.HandlerFunc(func(ctx context.Context, a *sink.Alert) error {
		mu.Lock()
		raws = append(raws, bytes.Clone(sink.RawMail(ctx))) // the server reuses its buffer after Handle
		mu.Unlock()
		if a.Subject == "fail" {
			return tempErr{}
		}
		return nil
	})
	users := map[string]string{"cam": hashOf(t, "pw")}
	s, err := smtpd.New(smtpd.Config{TLS: cert.TLSConfig(tls.VersionTLS12), Auth: smtpd.Auth{Mode: smtpd.AuthOptional, Users: users}},
		h, slog.New(slog.NewTextHandler(smtptest.LogWriter(t), nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.SetAuthSleep(func(context.Context, time.Duration) {})
	obs := &observed{replies: map[int]int{}}
	s.Observe(obs)
	plain, _ := net.Listen("tcp", "127.0.0.1:0")
	implicit, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 2)
	go func() { done <- s.Serve(plain) }()
	go func() { done <- s.ServeTLS(implicit) }()

	const okMail = "From: cam@cams.lan\r\nSubject: Motion\r\n\r\nMotion on camera 1.\r\n..dot-stuffed line\r\n"
	c := dial(t, plain.Addr().String())
	c.cmd("HELO cam", 250)
	if code, _ := c.mail("cam@cams.lan", okMail); code != 250 {
		t.Fatalf("mail: %d", code)
	}
	if code, _ := c.mail("cam@cams.lan", "From: cam@cams.lan\r\nSubject: fail\r\n\r\nx\r\n"); code != 451 {
		t.Fatalf("failing mail: %d", code)
	}
	c.cmd("QUIT", 221)

	sc, err := smtp.Dial(plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.StartTLS(clientTLS(0)); err != nil {
		t.Fatal(err)
	}
	sc.Quit()

	conn, err := tls.Dial("tcp", implicit.Addr().String(), clientTLS(0))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Auth(smtp.PlainAuth("", "cam", "wrong", "127.0.0.1")); err == nil {
		t.Fatal("wrong password accepted")
	}
	tc.Quit()

	_ = s.Shutdown(context.Background())
	<-done
	<-done
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.opened != 3 || obs.closed != 3 || obs.tls != 2 || obs.authFail != 1 || obs.replies[250] != 1 || obs.replies[451] != 1 {
		t.Errorf("observed opened %d closed %d tls %d auth failures %d replies %v; want 3 3 2 1 and one 250, one 451",
			obs.opened, obs.closed, obs.tls, obs.authFail, obs.replies)
	}
	mu.Lock()
	defer mu.Unlock()
	want := bytes.ReplaceAll([]byte(okMail), []byte("\r\n..dot"), []byte("\r\n.dot")) // as the device meant it
	if len(raws) != 2 || !bytes.Equal(raws[0], want) {
		t.Errorf("raw mail in the handler's context: %q, want %q", raws, want)
	}
}
