// Package broker runs the MQTT broker edgesink embeds when no broker is
// configured, so a Raspberry Pi with nothing else installed is a complete
// appliance: devices mail edgesink, and MQTT clients on the LAN subscribe to
// it directly. It is the only package that imports mochi-mqtt.
//
// Only edgesink's own output (PublisherUser, with a password cmd generates)
// publishes on edgesink's topics. With users configured every client logs in
// and gets the rights of its role (RoleReader, RoleHomeAssistant), derived
// from the topics edgesink publishes on (Topics), never from a literal
// edgesink/#. Without users, anonymous clients may do anything, as before
// users existed: Start refuses that on an address other than loopback
// unless AllowAnonymous says so.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/edgesink/edgesink/forward/guard"
	"github.com/edgesink/edgesink/sink/config"
)

// DefaultAddr is where the embedded broker listens unless told otherwise.
const DefaultAddr = "127.0.0.1:1883"

// Config is the embedded broker's settings. The yaml names are keys of the
// configuration file's mqtt section; the fields without one are filled in
// by cmd/edgesink.
type Config struct {
	// Users may log in; with none, anonymous clients may do anything.
	Users map[string]User `yaml:"embedded_users"`
	// AllowAnonymous lets clients in without a login: on a broker with
	// users they get RoleReader's rights; on one without users it allows
	// the open broker on an address other than loopback.
	AllowAnonymous bool `yaml:"embedded_allow_anonymous"`
	// TLS is an optional second listener speaking MQTT over TLS.
	TLS TLSListener `yaml:"embedded_tls"`

	Listen            string                                     `yaml:"-"` // plain MQTT, host:port
	ServerTLS         *tls.Config                                `yaml:"-"` // for TLS.Listen: cmd loads TLS's files (or a self-signed certificate)
	Topics            Topics                                     `yaml:"-"` // what edgesink publishes on
	PublisherPassword string                                     `yaml:"-"` // PublisherUser's password; "" lets no one log in as it
	PublisherClientID string                                     `yaml:"-"` // the output's client id: no one else may take it
	CheckPassword     func(hash, password []byte) error          `yaml:"-"` // bcrypt's CompareHashAndPassword (cmd wires it: no output links x/crypto)
	Sleep             func(ctx context.Context, d time.Duration) `yaml:"-"` // waits before refusing a login; nil: real time
}

// DefaultConfig is the embedded broker's settings unless told otherwise:
// no users, no TLS listener.
func DefaultConfig() Config {
	return Config{Users: map[string]User{}}
}

// TLSListener is the broker's TLS listener. Without certificate files cmd
// uses the self-signed certificate SMTP TLS uses, and logs its
// fingerprint.
type TLSListener struct {
	Listen   string `yaml:"listen"`    // host:port, e.g. 0.0.0.0:8883; "" for no TLS listener
	CertFile string `yaml:"cert_file"` // PEM certificate (chain)
	KeyFile  string `yaml:"key_file"`  // its PEM key
}

// ErrOpenOnLAN is why Start refuses a broker without users on an address
// other than loopback.
var ErrOpenOnLAN = errors.New("the embedded broker listens beyond this machine without users: " +
	"anyone on the network could read and forge alerts; add mqtt.embedded_users " +
	"(edgesink hash-password), listen on 127.0.0.1, or set mqtt.embedded_allow_anonymous: true")

// Validate reports the first setting that cannot work, naming its yaml key
// (config.KeyError).
func (c Config) Validate() error {
	for name, u := range c.Users {
		switch {
		case name == "":
			return config.Bad("embedded_users", "a user with an empty name")
		case name == PublisherUser:
			return config.Bad("embedded_users", "%q is the name edgesink's own output logs in with; choose another", name)
		case !looksBcrypt(u.Password):
			return config.Bad("embedded_users", "%q: password is not a bcrypt hash (make one with 'edgesink hash-password')", name)
		}
		switch u.Role {
		case RoleReader, RoleHomeAssistant:
		default:
			return config.Bad("embedded_users", "%q: role %q: want %s or %s", name, u.Role, RoleReader, RoleHomeAssistant)
		}
	}
	if c.TLS.Listen != "" {
		if _, _, err := net.SplitHostPort(c.TLS.Listen); err != nil {
			return config.Bad("embedded_tls.listen", "%q: want host:port, e.g. 0.0.0.0:8883", c.TLS.Listen)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return config.Bad("embedded_tls.cert_file", "cert_file and key_file go together (or both empty: self-signed)")
	}
	return nil
}

// looksBcrypt checks the form of a bcrypt hash ($2a$10$ and 53 more
// characters) without linking bcrypt, which no output may.
func looksBcrypt(h string) bool {
	return len(h) == 60 && (strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")) && h[6] == '$'
}

// OpenOnLAN tells whether anonymous clients could reach the broker from
// beyond this machine with every right: no users, and a listener on an
// address other than loopback.
func (c Config) OpenOnLAN() bool {
	if len(c.Users) > 0 {
		return false
	}
	return !guard.Loopback(c.Listen) || (c.TLS.Listen != "" && !guard.Loopback(c.TLS.Listen))
}

// sysTopicInterval is how often, in seconds, the broker refreshes its
// $SYS topics.
const sysTopicInterval = 60

// Broker is a running embedded MQTT broker.
type Broker struct {
	srv       *mochi.Server
	addr      string
	tlsAddr   string
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// Start binds its listeners at once (so a port in use is reported before
// anything else starts) and serves MQTT until Close. It refuses an open
// broker on the LAN (ErrOpenOnLAN) unless cfg.AllowAnonymous.
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.OpenOnLAN() && !cfg.AllowAnonymous {
		return nil, ErrOpenOnLAN
	}
	if len(cfg.Users) > 0 && cfg.CheckPassword == nil {
		return nil, errNoCheck
	}
	if cfg.TLS.Listen != "" && cfg.ServerTLS == nil {
		return nil, errors.New("broker: a TLS listener without a certificate (Config.ServerTLS)")
	}
	if cfg.Sleep == nil {
		cfg.Sleep = guard.Sleep
	}
	// mochi logs every client connect and disconnect at info and warn;
	// keep that for --log-level debug only.
	blog := log.With("component", "broker")
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		blog = slog.New(minLevel{blog.Handler(), slog.LevelError})
	}
	srv := mochi.New(&mochi.Options{
		Logger:       blog,
		InlineClient: false,
		// $SYS statistics once a minute, not every second: an idle broker
		// should let the board sleep. (mochi's four other housekeeping
		// tickers run every second and cannot be set.)
		SysTopicResendInterval: sysTopicInterval,
	})
	ctx, cancel := context.WithCancel(context.Background())
	hook := &authHook{cfg: cfg, read: cfg.Topics.filters(), srv: srv, ctx: ctx,
		log: log.With("component", "broker"), failing: guard.NewFailures(maxFailingAddrs)}
	if err := srv.AddHook(hook, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	b := &Broker{srv: srv, cancel: cancel}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Listen})
	if err := srv.AddListener(tcp); err != nil {
		cancel()
		return nil, fmt.Errorf("broker: listen on %s: %w", cfg.Listen, err)
	}
	b.addr = tcp.Address()
	if cfg.TLS.Listen != "" {
		tl := listeners.NewTCP(listeners.Config{ID: "tls", Address: cfg.TLS.Listen, TLSConfig: cfg.ServerTLS})
		if err := srv.AddListener(tl); err != nil {
			cancel()
			_ = srv.Close()
			return nil, fmt.Errorf("broker: listen on %s: %w", cfg.TLS.Listen, err)
		}
		b.tlsAddr = tl.Address()
	}
	if err := srv.Serve(); err != nil {
		cancel()
		_ = srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return b, nil
}

// Addr is the address the broker listens on, with the real port.
func (b *Broker) Addr() string { return b.addr }

// TLSAddr is the TLS listener's address, "" without one.
func (b *Broker) TLSAddr() string { return b.tlsAddr }

// URL is the broker's address as a client on this machine reaches it,
// e.g. tcp://127.0.0.1:1883 (loopback when listening on every address).
func (b *Broker) URL() string {
	host, port, err := net.SplitHostPort(b.addr)
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			if ip.To4() != nil {
				host = "127.0.0.1"
			} else {
				host = "::1"
			}
		}
		return "tcp://" + net.JoinHostPort(host, port)
	}
	return "tcp://" + b.addr
}

// Close disconnects all clients and stops the broker. Calling it again is a
// no-op.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.cancel()
		err = b.srv.Close()
	})
	return err
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
