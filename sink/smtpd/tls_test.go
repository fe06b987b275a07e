package smtpd_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink/smtpd"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// tlsServer runs a sink with a fresh self-signed certificate, plain SMTP
// (with STARTTLS) on one port and implicit TLS on another.
func tlsServer(t *testing.T, minVersion uint16, auth smtpd.Auth) (cert *smtpd.Certificate, plain, implicit string, rec *recorder) {
	t.Helper()
	cert, created, err := smtpd.SelfSignedCertificate(filepath.Join(t.TempDir(), "tls"), "edgesink.test")
	if err != nil || !created {
		t.Fatalf("self-signed: %v (created %v)", err, created)
	}
	rec = &recorder{}
	s, plain := startServer(t, smtpd.Config{TLS: cert.TLSConfig(minVersion), Auth: auth}, rec)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeTLS(l) }()
	t.Cleanup(func() { _ = s.Close(); <-done })
	return cert, plain, l.Addr().String(), rec
}

func clientTLS(maxVersion uint16) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: maxVersion}
}

// TestSTARTTLS: STARTTLS is offered and works; AUTH, refused in the clear
// without allow_insecure, works over it; the mail arrives.
func TestSTARTTLS(t *testing.T) {
	users := map[string]string{"cam": hashOf(t, "pw")}
	_, plain, _, rec := tlsServer(t, tls.VersionTLS12, smtpd.Auth{Mode: smtpd.AuthRequired, Users: users})
	c, err := smtp.Dial(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("cam"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before TLS without allow_insecure")
	}
	if err := c.StartTLS(clientTLS(0)); err != nil {
		t.Fatal(err)
	}
	if state, ok := c.TLSConnectionState(); !ok || state.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %v %x", ok, state.Version)
	}
	if err := c.Auth(smtp.PlainAuth("", "cam", "pw", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH over STARTTLS: %v", err)
	}
	sendOne(t, c)
	if got := rec.got(); len(got) != 1 || got[0].Device != "cam" {
		t.Errorf("alerts %+v", got)
	}
}

func sendOne(t *testing.T, c *smtp.Client) {
	t.Helper()
	if err := smtptest.Send(c, "cam@cams.lan", "alerts@edgesink.lan", []byte(simpleMail), nil); err != nil {
		t.Fatal(err)
	}
}

// TestImplicitTLS: SMTPS on the second listener: TLS from the first byte,
// AUTH offered because the session is secure.
func TestImplicitTLS(t *testing.T) {
	users := map[string]string{"nas": hashOf(t, "pw")}
	cert, _, implicit, rec := tlsServer(t, tls.VersionTLS12, smtpd.Auth{Mode: smtpd.AuthRequired, Users: users})
	conn, err := tls.Dial("tcp", implicit, clientTLS(0))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	if got := strings.ReplaceAll(cert.Fingerprint(), ":", ""); !strings.EqualFold(got, fmt.Sprintf("%x", sum)) {
		t.Errorf("Fingerprint %s is not the served certificate's", cert.Fingerprint())
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("nas"); err != nil {
		t.Fatal(err)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "LOGIN") {
		t.Errorf("AUTH over implicit TLS: %v %q", ok, mechs)
	}
	if err := c.Auth(smtp.PlainAuth("", "nas", "pw", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	sendOne(t, c)
	if n := len(rec.got()); n != 1 {
		t.Errorf("%d alerts", n)
	}
}

// TestTLSMinVersion: a TLS 1.0-only device is refused at the default
// minimum (1.2) and served when tls min_version is 1.0.
func TestTLSMinVersion(t *testing.T) {
	for _, tc := range []struct {
		min uint16
		ok  bool
	}{{tls.VersionTLS12, false}, {tls.VersionTLS10, true}} {
		_, _, implicit, _ := tlsServer(t, tc.min, smtpd.Auth{})
		conn, err := tls.Dial("tcp", implicit, clientTLS(tls.VersionTLS10))
		if (err == nil) != tc.ok {
			t.Errorf("server min %x, TLS 1.0 client: err %v, want ok=%v", tc.min, err, tc.ok)
		}
		if err == nil {
			line, _ := bufio.NewReader(conn).ReadString('\n')
			if !strings.HasPrefix(line, "220 ") {
				t.Errorf("greeting over TLS 1.0: %q", line)
			}
			conn.Close()
		}
	}
}

// TestCertificateReload: after the files change, Reload serves the new
// certificate to new connections; a broken file keeps the old one.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	cert, _, err := smtpd.SelfSignedCertificate(dir, "one.test")
	if err != nil {
		t.Fatal(err)
	}
	before := cert.Fingerprint()
	other, _, err := smtpd.SelfSignedCertificate(filepath.Join(dir, "other"), "two.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		data, _ := os.ReadFile(filepath.Join(dir, "other", f))
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := cert.Reload(); err != nil {
		t.Fatal(err)
	}
	if cert.Fingerprint() == before || cert.Fingerprint() != other.Fingerprint() {
		t.Error("Reload did not take the new certificate")
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cert.Reload(); err == nil {
		t.Error("Reload of a broken file: no error")
	}
	if cert.Fingerprint() != other.Fingerprint() {
		t.Error("a failed Reload dropped the certificate in use")
	}
	_, created, err := smtpd.SelfSignedCertificate(dir+"/other", "two.test")
	if err != nil || created {
		t.Errorf("second start made a new certificate: %v %v", created, err)
	}
}

// TestImplicitTLSRefusalReadable: a client refused at accept on the SMTPS
// port gets the reply inside TLS, not plaintext it cannot read.
func TestImplicitTLSRefusalReadable(t *testing.T) {
	cert, _, err := smtpd.SelfSignedCertificate(filepath.Join(t.TempDir(), "tls"), "edgesink.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := smtpd.Config{TLS: cert.TLSConfig(tls.VersionTLS12),
		Policy: smtpd.Policy{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}
	s, _ := startServer(t, cfg, &recorder{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeTLS(l)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), clientTLS(0))
	if err != nil {
		t.Fatalf("TLS handshake with a refused client: %v", err)
	}
	defer conn.Close()
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "554 5.7.1 ") {
		t.Errorf("refused TLS client read %q, want 554 5.7.1", line)
	}
}
