// Package status is edgesink's window for people and monitoring: the status
// page (what mail arrived, what it became, where it went, the queue and its
// dead letters), Prometheus metrics on /metrics, and the /healthz and
// /readyz checks. It is standard library only (net/http, html/template,
// embed); password checking (bcrypt) is handed in by cmd.
//
// What it promises: every string that came from a mail is rendered as text
// by html/template and the page runs no inline script (a strict
// Content-Security-Policy says so to the browser); a POST needs the
// session's token; metric labels come from closed sets, never from a mail;
// and while no page is open it runs no timer (live updates are pushed over
// Server-Sent Events only when something happens).
package status

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/guard"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Listen values with a meaning of their own.
const (
	Disabled      = "none"           // http.listen: no HTTP server
	DefaultListen = "127.0.0.1:8025" // loopback: no login needed
)

// Defaults for Config fields left empty.
const (
	DefaultReadyGrace   = 30 * time.Second
	DefaultMaxStreams   = 4
	DefaultRecentAlerts = 50
	DefaultRawMemory    = 8 << 20
)

// Config is the http section of the configuration file.
type Config struct {
	Listen         string            `yaml:"listen"`                  // host:port, or "none"
	Users          map[string]string `yaml:"users"`                   // login name -> bcrypt hash ('edgesink hash-password')
	AllowAnonymous bool              `yaml:"allow_anonymous"`         // no login even beyond loopback
	TLS            bool              `yaml:"tls"`                     // HTTPS with the SMTP certificate (smtp.tls.cert_file or the self-signed one)
	ReadyGrace     time.Duration     `yaml:"ready_grace"`             // an output down for longer makes /readyz 503
	MaxStreams     int               `yaml:"max_streams"`             // pages open with live updates at once
	RecentAlerts   int               `yaml:"recent_alerts"`           // alerts the page lists
	RawMemory      int64             `yaml:"raw_memory" unit:"bytes"` // raw mails of queued alerts held in RAM (and the ring)
	RawRing        int               `yaml:"raw_ring"`                // keep the raw mail of the last N alerts too (0: off)
}

// DefaultConfig is the status page edgesink runs unless told otherwise.
func DefaultConfig() Config {
	return Config{
		Listen:       DefaultListen,
		Users:        map[string]string{},
		ReadyGrace:   DefaultReadyGrace,
		MaxStreams:   DefaultMaxStreams,
		RecentAlerts: DefaultRecentAlerts,
		RawMemory:    DefaultRawMemory,
	}
}

// Enabled tells whether an HTTP server is to run.
func (c Config) Enabled() bool { return c.Listen != Disabled && c.Listen != "" }

// NeedsLogin tells whether the page asks for a login: it listens beyond
// loopback and anonymous access was not asked for.
func (c Config) NeedsLogin() bool {
	return c.Enabled() && !c.AllowAnonymous && !guard.Loopback(c.Listen)
}

// Validate reports the first setting that cannot work; errors name the
// key (config.KeyError).
func (c Config) Validate() error {
	if c.Enabled() {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return config.Bad("listen", "%q: want host:port, e.g. 0.0.0.0:8025, or %s", c.Listen, Disabled)
		}
		if host != "" && host != "localhost" && net.ParseIP(host) == nil {
			return config.Bad("listen", "%q: host must be an IP address (or empty for all)", c.Listen)
		}
		if port == "" {
			return config.Bad("listen", "%q: no port", c.Listen)
		}
	}
	for user, hash := range c.Users {
		if user == "" {
			return config.Bad("users", "empty user name")
		}
		if len(hash) < 4 || hash[0] != '$' || hash[1] != '2' {
			return config.Bad("users", "%s: want a bcrypt hash from 'edgesink hash-password', not a password", user)
		}
	}
	for _, l := range []struct {
		key string
		v   int64
	}{
		{"ready_grace", int64(c.ReadyGrace)}, {"max_streams", int64(c.MaxStreams)},
		{"recent_alerts", int64(c.RecentAlerts)}, {"raw_memory", c.RawMemory},
	} {
		if l.v <= 0 {
			return config.Bad(l.key, "must be greater than zero")
		}
	}
	if c.RawRing < 0 {
		return config.Bad("raw_ring", "must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ReadyGrace == 0 {
		c.ReadyGrace = d.ReadyGrace
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = d.MaxStreams
	}
	if c.RecentAlerts == 0 {
		c.RecentAlerts = d.RecentAlerts
	}
	if c.RawMemory == 0 {
		c.RawMemory = d.RawMemory
	}
	return c
}

// Queue is what the page shows of, and does to, the delivery engine
// (*spool.Spool).
type Queue interface {
	Stats() spool.Stats
	Dead() ([]spool.DeadLetter, error)
	RetryDead(ctx context.Context, id string) error
	DropDead(id string) error
	Dir() string
}

// Output is one output as the page shows it: the Forwarder itself (its
// optional forward.Stater tells whether it is connected).
type Output = forward.Forwarder

// Snapshots is where the latest camera snapshot of each device is kept
// (by whoever publishes them); device is DeviceInfo.Name.
type Snapshots interface {
	Snapshot(device string) (jpeg []byte, ok bool)
	// HasSnapshot tells, cheaply, whether Snapshot would find one: the
	// device list asks it for every device at every update.
	HasSnapshot(device string) bool
}

// Clients is the embedded broker, when there is one.
type Clients interface{ Clients() int }

// Info is about the running process.
type Info struct {
	Version    string
	ConfigPath string   // "" for the built-in defaults
	Listening  []string // "smtp 127.0.0.1:2525", …
}

// ReplayFunc runs a raw mail through the whole pipeline again (extraction,
// classification, queue) as a new alert whose ReplayOf is orig's id, and
// returns it. orig is the dead letter's alert (its envelope is reused).
type ReplayFunc func(ctx context.Context, raw []byte, orig *sink.Alert) (*sink.Alert, error)

// Deps is what cmd hands the server: the stages to show, and what the
// package must not import itself.
type Deps struct {
	Recorder *Recorder
	Queue    Queue    // nil: no queue to show
	Outputs  []Output // the outputs, as opened (not wrapped)
	Broker   Clients  // nil without an embedded broker
	Devices  Devices  // nil: the devices the Recorder saw
	// Snapshots, when set, serves each device's latest snapshot on
	// /snapshot/DEVICE.jpg, shown as the device's thumbnail.
	Snapshots Snapshots
	Replay    ReplayFunc
	// CheckPassword compares a password with a bcrypt hash (nil error:
	// they match). Required when Config.NeedsLogin.
	CheckPassword func(hash, password string) error
	TLS           *tls.Config // with Config.TLS
	SMTPListening func() bool // for /readyz
	Info          Info
}

// Server is the HTTP server.
type Server struct {
	cfg     Config
	d       Deps
	log     *slog.Logger
	started time.Time
	http    *http.Server
	auth    *auth
	hub     *hub
	mux     *http.ServeMux
	sleep   func(context.Context, time.Duration)

	mu   sync.Mutex
	addr string
}

// New checks cfg and builds the server; Serve starts it.
func New(cfg Config, d Deps, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	if d.Recorder == nil {
		return nil, errors.New("http: no recorder")
	}
	if cfg.NeedsLogin() {
		if len(cfg.Users) == 0 {
			return nil, errors.New("http: a login is needed on " + cfg.Listen + " but no user is configured")
		}
		if d.CheckPassword == nil {
			return nil, errors.New("http: no password checker")
		}
	}
	if cfg.TLS && d.TLS == nil {
		return nil, errors.New("http: tls without a certificate")
	}
	if d.Devices == nil {
		d.Devices = d.Recorder
	}
	s := &Server{cfg: cfg, d: d, log: log.With("component", "http"), started: time.Now(), sleep: guard.Sleep}
	s.auth = newAuth(cfg, d.CheckPassword, cfg.TLS)
	s.hub = newHub(cfg.MaxStreams)
	d.Recorder.setOnChange(s.hub.notify)
	s.mux = s.routes()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSConfig:         d.TLS,
	}
	return s, nil
}

// Serve answers HTTP (HTTPS with Config.TLS) on l until Shutdown; it then
// returns nil.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.addr = l.Addr().String()
	s.mu.Unlock()
	var err error
	if s.cfg.TLS {
		err = s.http.ServeTLS(l, "", "")
	} else {
		err = s.http.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown ends the live-update streams, then waits for requests in
// progress until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.hub.close()
	return s.http.Shutdown(ctx)
}

// Close stops at once.
func (s *Server) Close() error {
	s.hub.close()
	return s.http.Close()
}

// ServeHTTP adds the security headers every answer carries.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if s.cfg.TLS {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	s.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows only the page's own files: no inline
// script or style, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
