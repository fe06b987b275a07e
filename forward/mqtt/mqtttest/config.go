package mqtttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/deploy/testtools"
)

// StartMosquittoConfig starts a broker from a whole configuration file of
// the test's making, such as a shipped example with its addresses
// templated: conf gets a free port for the listener the test reaches it
// on (Addr). Restart starts it again from the same file, on the same port.
func StartMosquittoConfig(t testing.TB, conf func(port int) string) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: testtools.RequireTool(t, "mosquitto")}
	dir := t.TempDir()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		m.Port = testtools.FreePort(t)
		m.conf = filepath.Join(dir, "mosquitto.conf")
		text := conf(m.Port)
		// Run as root, mosquitto stays root instead of dropping to a
		// "mosquitto" user that cannot read the test's private temp files.
		if os.Geteuid() == 0 && !strings.Contains(text, "\nuser ") {
			text = "user root\n" + text
		}
		if err = os.WriteFile(m.conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err = m.start(); err == nil {
			t.Cleanup(m.Stop)
			return m
		}
	}
	t.Fatalf("mosquitto did not start: %v", err)
	return nil
}

// Log is what the broker wrote (to stderr, unless its configuration says
// otherwise) while it last ran; read it once the broker is stopped.
func (m *Mosquitto) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log == nil {
		return ""
	}
	return m.log.String()
}
