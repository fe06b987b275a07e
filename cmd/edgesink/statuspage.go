package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgesink/edgesink/forward/registry"
	"github.com/edgesink/edgesink/forward/status"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/extract"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// httpAdminName is the file, beside the instance lock, that holds the
// bcrypt hash of the status page's generated "admin" password (made at
// the first start that needs a login and has no http.users).
const httpAdminName = "http-admin"

// generatedAdmin is the login name of the generated password.
const generatedAdmin = "admin"

// httpUsers returns the status page's users: http.users, else the
// generated admin (made now, and its password logged once, if needed).
func httpUsers(cfg status.Config, dir string, log *slog.Logger) (map[string]string, error) {
	if !cfg.NeedsLogin() || len(cfg.Users) > 0 {
		return cfg.Users, nil
	}
	path := filepath.Join(dir, httpAdminName)
	data, err := os.ReadFile(path)
	if err == nil {
		hash := strings.TrimSpace(string(data))
		log.Info("status page: log in as admin with the password logged at its first start (or set http.users)", "file", path)
		return map[string]string{generatedAdmin: hash}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("http: read %s: %w", path, err)
	}
	password := randomPassword(16)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("http: hash the generated password: %w", err)
	}
	if err := os.WriteFile(path, append(hash, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("http: keep the generated password: %w", err)
	}
	log.Warn("status page: created the login admin; its password is shown only now "+
		"(delete "+path+" and restart for a new one, or set http.users)", "user", generatedAdmin, "password", password)
	return map[string]string{generatedAdmin: string(hash)}, nil
}

// randomPassword is n characters from an alphabet without look-alikes.
func randomPassword(n int) string {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	var b strings.Builder
	for b.Len() < n {
		var c [1]byte
		_, _ = rand.Read(c[:])
		if int(c[0]) < 256-256%len(alphabet) { // no bias towards the first letters
			b.WriteByte(alphabet[int(c[0])%len(alphabet)])
		}
	}
	return b.String()
}

func checkBcrypt(hash, password string) error {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
}

// replayer runs a raw mail through extraction and handler (classification
// and the queue) again, as a new alert that names the one it replays.
func replayer(handler sink.Handler) status.ReplayFunc {
	return func(ctx context.Context, raw []byte, orig *sink.Alert) (*sink.Alert, error) {
		return replay(ctx, raw, orig, handler)
	}
}

func replay(ctx context.Context, raw []byte, orig *sink.Alert, handler sink.Handler) (*sink.Alert, error) {
	a, err := extract.Extract(raw, extract.Envelope{
		ReceivedAt: time.Now(),
		RemoteAddr: orig.RemoteAddr,
		Helo:       orig.Helo,
		MailFrom:   orig.MailFrom,
		RcptTo:     orig.RcptTo,
	})
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", orig.ID, err)
	}
	if orig.Device != "" {
		a.Device = orig.Device // named as it was (by AUTH user or the devices map)
	}
	a.ReplayOf = orig.ID
	if err := handler.Handle(ctx, a); err != nil {
		return nil, fmt.Errorf("replay %s: %w", orig.ID, err)
	}
	return a, nil
}

// statusPage is the running HTTP server and what SIGHUP reloads of it.
type statusPage struct {
	srv  *status.Server
	cert *smtpd.Certificate // its own certificate when SMTP has none; nil otherwise
	addr string
}

// startStatusPage binds http.listen and serves the status page. smtpCert
// is SMTP's certificate, shared when http.tls is on.
func startStatusPage(cfg Config, deps status.Deps, smtpCert *smtpd.Certificate, lockDir string, log *slog.Logger) (*statusPage, error) {
	hc := cfg.HTTP
	users, err := httpUsers(hc, lockDir, log)
	if err != nil {
		return nil, err
	}
	hc.Users = users
	deps.CheckPassword = checkBcrypt
	page := &statusPage{}
	if hc.TLS {
		cert := smtpCert
		if cert == nil {
			if cert, _, err = cfg.SMTP.TLS.certificate(cfg.SMTP.Domain); err != nil {
				return nil, fmt.Errorf("http tls: %w", err)
			}
			page.cert = cert
		}
		minVersion, _ := smtpd.ParseTLSVersion(cfg.SMTP.TLS.MinVersion)
		deps.TLS = cert.TLSConfig(minVersion)
	}
	srv, err := status.New(hc, deps, log)
	if err != nil {
		return nil, &configError{err}
	}
	l, err := net.Listen("tcp", hc.Listen)
	if err != nil {
		return nil, fmt.Errorf("http: %w", portInUse(err, hc.Listen, "http.listen"))
	}
	page.srv, page.addr = srv, l.Addr().String()
	go func() {
		if err := srv.Serve(l); err != nil {
			log.Error("status page stopped", "err", err)
		}
	}()
	scheme := "http"
	if hc.TLS {
		scheme = "https"
	}
	log.Info("status page listening", "url", scheme+"://"+page.addr+"/", "login", hc.NeedsLogin())
	return page, nil
}

// listening is what the status page lists as edgesink's addresses.
func listening(info readyInfo) []string {
	var out []string
	add := func(what, addr string) {
		if addr != "" {
			out = append(out, what+" "+addr)
		}
	}
	for _, a := range info.SMTPAddrs {
		add("smtp", a)
	}
	for _, a := range info.SMTPSAddrs {
		add("smtps", a)
	}
	add("mqtt broker", info.BrokerAddr)
	add("mqtt broker (tls)", info.BrokerTLSAddr)
	return out
}

// registryDevices is the page's device list read from the device registry
// (the devices Home Assistant knows), with what the recorder saw of each
// since the start; a device the recorder saw that is not registered (a
// routing rule keeps it off MQTT) is listed too.
type registryDevices struct {
	reg *registry.Registry
	rec *status.Recorder
}

func (d registryDevices) Devices() []status.DeviceInfo {
	seen := map[string]status.DeviceInfo{}
	for _, di := range d.rec.Devices() {
		seen[di.Name] = di
	}
	var out []status.DeviceInfo
	for _, dev := range d.reg.List() {
		di, ok := seen[dev.Name]
		if !ok {
			di = status.DeviceInfo{Name: dev.Name, Template: dev.Template, LastAt: dev.LastSeen}
		}
		delete(seen, dev.Name)
		out = append(out, di)
	}
	for _, di := range seen {
		out = append(out, di)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
