package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestSpoolListMemory: with spool.mode memory, 'edgesink spool list' shows
// what the running edgesink holds in RAM (asked over its control socket),
// and says plainly when no edgesink runs.
func TestSpoolListMemory(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	cfg := testConfig(t, broker.URL(), "")
	cfg.Spool.Mode = spool.ModeMemory
	cfg.SMTP.ShutdownGrace = 500 * time.Millisecond // the broker stays down: nothing to drain
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(conf, []byte("spool:\n  mode: memory\n  dir: "+cfg.Spool.Dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	es := startEdgesink(t, cfg)
	broker.Stop() // the alerts wait in RAM
	for _, subject := range []string{"held-in-ram-1", "held-in-ram-2"} {
		if err := sendMail(context.Background(), es.SMTPAddr, "x", "cam@cams.lan", []string{"a@b"}, smtptest.SubjectMail(subject)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI("spool", "list", "--config", conf)
	if code != exitOK || !strings.Contains(out, "held-in-ram-1") || !strings.Contains(out, "held-in-ram-2") ||
		!strings.Contains(out, "memory spool of the running edgesink: 2 queued") {
		t.Fatalf("spool list of a memory spool: %d\n%s%s", code, out, errOut)
	}
	if err := es.stop(); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("spool", "list", "--config", conf)
	if code != exitRuntime || !strings.Contains(errOut, "no running edgesink answers") {
		t.Fatalf("spool list with no edgesink running: %d %s", code, errOut)
	}
}
