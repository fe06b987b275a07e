package systemtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestEveryPortAtOnce: one edgesink serves devices set to different ports
// at the same time: two plain listeners (--smtp-listen repeated) and one
// implicit-TLS listener (smtp.tls.listen_implicit as a list), each client
// sending at once, every alert reaching the broker. (The listeners share
// one policy: with the default max_connections_per_ip the 15 clients from
// one address are partly refused 421, hence the raised limit.)
func TestEveryPortAtOnce(t *testing.T) {
	dir := t.TempDir()
	plain1, plain2 := fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t))
	smtps := fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t))
	conf := filepath.Join(dir, "edgesink.yaml")
	// Coalescing off: the NVR's "motion on ch1" mails would be folded into
	// one follow-up, and this test counts each mail by its subject.
	yaml := fmt.Sprintf("coalesce:\n  disabled: true\nsmtp:\n  max_connections_per_ip: 32\n  tls:\n    starttls: true\n    listen_implicit:\n      - %s\n    dir: %s\n", smtps, filepath.Join(dir, "tls"))
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	_, listening := startBinary(t, binary(t), "--config", conf, "--smtp-listen", plain1, "--smtp-listen", plain2,
		"--mqtt-broker", broker.URL(), "--spool-dir", filepath.Join(dir, "spool"))
	if listening != plain1+","+plain2 {
		t.Fatalf("listening on %s, want %s,%s", listening, plain1, plain2)
	}

	const perPort = 5
	var want []string
	var wg sync.WaitGroup
	errs := make(chan error, 3*perPort)
	for _, port := range []struct {
		name string
		send func(subject string) error
	}{
		{"plain1", func(s string) error { return sendPlain(plain1, s) }},
		{"plain2", func(s string) error { return sendPlain(plain2, s) }},
		{"smtps", func(s string) error { return sendImplicitTLS(smtps, s) }},
	} {
		for i := range perPort {
			subject := port.name + "-" + strconv.Itoa(i)
			want = append(want, subject)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := port.send(subject); err != nil {
					errs <- fmt.Errorf("%s: %w", subject, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := sub.AwaitSubjects(t, want, 20*time.Second)
	if d := mqtttest.Duplicates(seen); d != 0 {
		t.Logf("%d duplicates", d)
	}
}

func sendPlain(addr, subject string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return smtptest.SendMail(ctx, nil, addr, "cam", "cam@cams.lan", "alerts@edgesink.lan", smtptest.SubjectMail(subject))
}

// sendImplicitTLS sends as an old NVR does on port 465: TLS from the first
// byte, bare LF line endings.
func sendImplicitTLS(addr, subject string) error {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return err
	}
	if err := c.Hello("nvr"); err != nil {
		return err
	}
	if err := c.Mail("nvr@cams.lan"); err != nil {
		return err
	}
	if err := c.Rcpt("alerts@edgesink.lan"); err != nil {
		return err
	}
	// Bare LF through to the end of data, below net/smtp's dot writer
	// (which would write CRLF).
	id, err := c.Text.Cmd("DATA")
	if err != nil {
		return err
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(354)
	c.Text.EndResponse(id)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(conn, "Subject: %s\n\nmotion on ch1\n.\n", subject); err != nil {
		return err
	}
	if _, _, err := c.Text.ReadResponse(250); err != nil {
		return err
	}
	return c.Quit()
}

// TestListenConflictStops: when one of several addresses is taken,
// edgesink stops at once with an error naming the address, its setting and
// what holds it, and exits 1.
func TestListenConflictStops(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free := fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t))
	code, _, stderr := runBinary(t, "--smtp-listen", free, "--smtp-listen", held.Addr().String(),
		"--mqtt-broker", "none", "--serial-device", "/dev/null", "--spool-dir", filepath.Join(t.TempDir(), "spool"))
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr)
	}
	for _, want := range []string{"smtp.listen " + held.Addr().String(), "address already in use", "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestReadyNamesEveryListener: systemd hears READY=1 once, with every
// listener (plain and implicit TLS) bound and named in its STATUS; each
// one answers a device right after.
func TestReadyNamesEveryListener(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	plain := []string{fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t))}
	smtps := fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t))
	conf := filepath.Join(dir, "edgesink.yaml")
	yaml := fmt.Sprintf("smtp:\n  listen: [%s, %s]\n  tls:\n    listen_implicit: %s\n    dir: %s\n", plain[0], plain[1], smtps, filepath.Join(dir, "tls"))
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	startBinaryEnv(t, binary(t), []string{"NOTIFY_SOCKET=" + sock}, "--config", conf,
		"--mqtt-broker", "none", "--serial-device", "/dev/null", "--spool-dir", filepath.Join(dir, "spool"))
	_ = l.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("no READY=1: %v", err)
		}
		msg := string(buf[:n])
		if !strings.Contains(msg, "READY=1") {
			continue
		}
		for _, a := range append(plain, smtps) {
			if !strings.Contains(msg, a) {
				t.Errorf("READY's status %q does not name %s", msg, a)
			}
		}
		break
	}
	for _, a := range plain {
		c := textConn(t, a, nil)
		if line := c.line(); !strings.HasPrefix(line, "220 ") {
			t.Errorf("%s greets %q", a, line)
		}
	}
	c := textConn(t, smtps, &tls.Config{InsecureSkipVerify: true})
	if line := c.line(); !strings.HasPrefix(line, "220 ") {
		t.Errorf("%s greets %q", smtps, line)
	}
}

type greeter struct {
	t *testing.T
	r *bufio.Reader
}

func (g greeter) line() string {
	s, err := g.r.ReadString('\n')
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

// textConn dials addr, over TLS when cfg is set.
func textConn(t *testing.T, addr string, cfg *tls.Config) greeter {
	t.Helper()
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.Dial("tcp", addr, cfg)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return greeter{t: t, r: bufio.NewReader(c)}
}
