package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTLSAndLogin publishes over TLS to a mosquitto that requires a user and
// password; the broker's PUBACK is the proof. A wrong password or an
// untrusted certificate never gets a connection, so alerts are refused with
// a temporary error.
func TestTLSAndLogin(t *testing.T) {
	passwd := testtools.RequireTool(t, "mosquitto_passwd")
	dir := t.TempDir()
	pool := mqtttest.WriteTestPKI(t, dir)
	pwfile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwfile, "edgesink", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	broker := mqtttest.StartMosquittoWith(t, "allow_anonymous false\npassword_file "+pwfile+
		"\ncafile "+filepath.Join(dir, "ca.pem")+"\ncertfile "+filepath.Join(dir, "server.pem")+
		"\nkeyfile "+filepath.Join(dir, "server.key")+"\n")
	url := "ssl://" + broker.Addr()

	good := newPublisher(t, Config{Broker: url, ClientID: "edgesink-tls-ok", Username: "edgesink", Password: "s3cret",
		TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := good.Forward(ctx, alert("cam")); err != nil {
		t.Fatalf("publish over TLS with login: %v", err)
	}

	for name, cfg := range map[string]Config{
		"wrong password": {Broker: url, ClientID: "edgesink-tls-badpw", Username: "edgesink", Password: "nope",
			TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		"untrusted certificate": {Broker: url, ClientID: "edgesink-tls-untrusted", Username: "edgesink", Password: "s3cret",
			TLS: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}},
	} {
		p, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := p.WaitConnected(wctx); err == nil {
			t.Errorf("%s: connected", name)
		}
		wcancel()
		if err := p.Forward(context.Background(), alert("cam")); !errors.Is(err, ErrNotConnected) {
			t.Errorf("%s: Forward = %v, want ErrNotConnected", name, err)
		}
		p.Close()
	}
}
