// Package broker runs the MQTT broker edgesink embeds when no broker is
// configured, so a Raspberry Pi with nothing else installed is a complete
// appliance: devices mail edgesink, and MQTT clients on the LAN subscribe to
// it directly. It is the only package that imports mochi-mqtt.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultAddr is where the embedded broker listens unless told otherwise.
const DefaultAddr = "127.0.0.1:1883"

// Broker is a running embedded MQTT broker.
type Broker struct {
	srv       *mochi.Server
	addr      string
	closeOnce sync.Once
}

// Start binds addr at once (so a port in use is reported before anything
// else starts) and serves MQTT on it until Close. It accepts every client:
// bind it to loopback or a trusted LAN only.
func Start(addr string, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
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
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return &Broker{srv: srv, addr: tcp.Address()}, nil
}

// Addr is the address the broker listens on, with the real port.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's address as a client URL, e.g. tcp://127.0.0.1:1883.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Close disconnects all clients and stops the broker. Calling it again is a
// no-op.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() { err = b.srv.Close() })
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
