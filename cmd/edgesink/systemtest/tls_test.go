package systemtest

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestCertificateReloadOnSIGHUP: the running binary serves a replaced
// certificate after SIGHUP, to new connections on its SMTPS port.
func TestCertificateReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	first, _, err := smtpd.SelfSignedCertificate(filepath.Join(dir, "a"), "one.test")
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := smtpd.SelfSignedCertificate(filepath.Join(dir, "b"), "two.test")
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live")
	install := func(from string) {
		t.Helper()
		if err := os.MkdirAll(live, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cert.pem", "key.pem"} {
			data, err := os.ReadFile(filepath.Join(dir, from, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(live, f), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("a")
	smtps := fmt.Sprintf("127.0.0.1:%d", testtools.FreePort(t))
	conf := filepath.Join(dir, "edgesink.yaml")
	yaml := fmt.Sprintf("smtp:\n  tls:\n    listen_implicit: %s\n    cert_file: %s\n    key_file: %s\n",
		smtps, filepath.Join(live, "cert.pem"), filepath.Join(live, "key.pem"))
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.StartMosquitto(t)
	cmd, _ := startBinary(t, binary(t), "--config", conf, "--smtp-listen", "127.0.0.1:0",
		"--mqtt-broker", broker.URL(), "--spool-dir", filepath.Join(dir, "spool"))
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", smtps, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
		return fmt.Sprintf("%X", sum)
	}
	fp := func(c *smtpd.Certificate) string { return strings.ReplaceAll(c.Fingerprint(), ":", "") }
	if got := served(); got != fp(first) {
		t.Fatalf("serving %s, want the first certificate %s", got, fp(first))
	}
	install("b")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for served() != fp(second) {
		if time.Now().After(deadline) {
			t.Fatal("still the old certificate 10s after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
