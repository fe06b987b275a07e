package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
)

// TestStatusPageTLS: http.tls serves the page over HTTPS with the SMTP
// certificate (here the self-signed one), the same one SMTP shows.
func TestStatusPageTLS(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	cfg := testConfig(t, broker.URL(), "")
	cfg.SMTP.TLS.StartTLS = true
	cfg.SMTP.TLS.Dir = t.TempDir()
	cfg.HTTP.TLS = true
	var buf syncBuffer
	info, _, err := serveLogged(t, cfg, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.HTTPAddr == "" {
		t.Fatalf("no status page address:\n%s", buf.String())
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the self-signed certificate is what is checked
	resp, err := c.Get("https://" + info.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("https /healthz: %s", resp.Status)
	}
	sum := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
	fp := hex.EncodeToString(sum[:])
	logged := buf.String()
	if !strings.Contains(strings.ReplaceAll(strings.ToLower(logged), ":", ""), fp) {
		t.Errorf("the page's certificate (sha256 %s) is not the SMTP one the log names:\n%s", fp, logged)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no Strict-Transport-Security over HTTPS")
	}
}

// TestGeneratedAdminKept: the generated admin password is made once; the
// next start reuses its hash and logs no password.
func TestGeneratedAdminKept(t *testing.T) {
	cfg := DefaultConfig().HTTP
	cfg.Listen = "0.0.0.0:8025"
	dir := t.TempDir()
	var first, second syncBuffer
	users, err := httpUsers(cfg, dir, newLogger(LogConfig{Level: "info", Format: "text"}, &first))
	if err != nil {
		t.Fatal(err)
	}
	again, err := httpUsers(cfg, dir, newLogger(LogConfig{Level: "info", Format: "text"}, &second))
	if err != nil {
		t.Fatal(err)
	}
	if users["admin"] == "" || users["admin"] != again["admin"] {
		t.Errorf("admin's hash changed between starts: %q, %q", users["admin"], again["admin"])
	}
	if !strings.Contains(first.String(), "password=") || strings.Contains(second.String(), "password=") {
		t.Errorf("the password must be logged at the first start only:\n%s\n%s", first.String(), second.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, httpAdminName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("http-admin: %v %v", fi, err)
	}
	cfg.Listen = "127.0.0.1:8025" // loopback: no login, nothing made
	if u, _ := httpUsers(cfg, t.TempDir(), newLogger(LogConfig{Level: "info", Format: "text"}, &second)); len(u) != 0 {
		t.Errorf("users made for a loopback page: %v", u)
	}
}
