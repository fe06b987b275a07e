package smtpd_test

import (
	"net"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestListenersShareLimits: one server on two ports (as on 25 and 587)
// counts connections on both together, for max_connections and for
// max_connections_per_ip alike.
func TestListenersShareLimits(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  smtpd.Config
	}{
		{"max_connections", smtpd.Config{MaxConnections: 2}},
		{"max_connections_per_ip", smtpd.Config{Policy: smtpd.Policy{MaxConnectionsPerIP: 2}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, first := startServer(t, tt.cfg, &recorder{})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = s.Serve(l) }()
			second := l.Addr().String()
			dial(t, first)
			dial(t, second)
			for _, addr := range []string{first, second} {
				c := dialFrom(t, "127.0.0.1", addr)
				if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.7.0 ") {
					t.Errorf("third connection, on %s: %d %q, want 421 4.7.0", addr, code, text)
				}
			}
		})
	}
}
