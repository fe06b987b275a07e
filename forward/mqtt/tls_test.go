package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// writeTestPKI writes a CA and a server certificate for 127.0.0.1 into dir
// and returns the CA pool a client trusts.
func writeTestPKI(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgesink test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("server.pem", "CERTIFICATE", srvDER)
	write("server.key", "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool
}

// TestTLSAndLogin publishes over TLS to a mosquitto that requires a user and
// password; the broker's PUBACK is the proof. A wrong password or an
// untrusted certificate never gets a connection, so alerts are refused with
// a temporary error.
func TestTLSAndLogin(t *testing.T) {
	passwd := testtools.RequireTool(t, "mosquitto_passwd")
	dir := t.TempDir()
	pool := writeTestPKI(t, dir)
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
