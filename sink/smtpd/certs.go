package smtpd

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Certificate is the server certificate devices see, from files that may be
// replaced while running (Reload, on SIGHUP).
type Certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads a PEM certificate (chain) and key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// SelfSignedCertificate uses cert.pem and key.pem in dir, creating them on
// first use: RSA 2048 (what the oldest TLS clients in cameras understand),
// valid for ten years, for host and this machine's addresses. created tells
// whether they were made now.
func SelfSignedCertificate(dir, host string) (c *Certificate, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
		if err := writeSelfSigned(dir, certFile, keyFile, host); err != nil {
			return nil, false, fmt.Errorf("tls: create self-signed certificate: %w", err)
		}
		created = true
	}
	c, err = LoadCertificate(certFile, keyFile)
	return c, created, err
}

func writeSelfSigned(dir, certFile, keyFile, host string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"edgesink self-signed"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ipn.IP)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// Reload reads the files again. On error the certificate in use stays.
func (c *Certificate) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s: %w", c.certFile, err)
	}
	c.current.Store(&cert)
	return nil
}

// Fingerprint is the SHA-256 of the leaf certificate, as devices that pin
// a certificate show it (AA:BB:...).
func (c *Certificate) Fingerprint() string {
	cert := c.current.Load()
	sum := sha256.Sum256(cert.Certificate[0])
	return strings.ToUpper(strings.Join(splitPairs(hex.EncodeToString(sum[:])), ":"))
}

func splitPairs(s string) []string {
	out := make([]string, 0, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return out
}

// TLS versions by their usual names, for configuration.
var tlsVersions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// ParseTLSVersion reads "1.0" .. "1.3".
func ParseTLSVersion(v string) (uint16, error) {
	n, ok := tlsVersions[v]
	if !ok {
		return 0, fmt.Errorf("TLS version %q: want 1.0, 1.1, 1.2 or 1.3", v)
	}
	return n, nil
}

// TLSConfig serves c with minVersion as the oldest protocol accepted. Below
// TLS 1.2 it also offers the CBC and RSA key exchange suites that TLS 1.0
// devices need (Go no longer offers them by default): acceptable for a LAN
// where the alternative is no TLS at all.
func (c *Certificate) TLSConfig(minVersion uint16) *tls.Config {
	cfg := &tls.Config{
		MinVersion: minVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current.Load(), nil
		},
	}
	if minVersion < tls.VersionTLS12 {
		for _, s := range tls.CipherSuites() {
			cfg.CipherSuites = append(cfg.CipherSuites, s.ID)
		}
		cfg.CipherSuites = append(cfg.CipherSuites,
			tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384)
	}
	return cfg
}
