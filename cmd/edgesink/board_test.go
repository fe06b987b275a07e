package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifiesSystemd checks the Type=notify handshake: READY=1 once the
// SMTP port listens, STOPPING=1 when shutdown begins, over a real unixgram
// socket as systemd provides it.
func TestNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	cfg := testConfig(t, brokerEmbedded, "")
	cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
	es := startEdgesink(t, cfg)
	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, es.SMTPAddr) {
		t.Errorf("first notification %q, want READY=1 and a status naming %s", got, es.SMTPAddr)
	}
	if err := es.stop(); err != nil {
		t.Fatal(err)
	}
	if got := read(); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Errorf("at shutdown got %q, want STOPPING=1", got)
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, want nothing done", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if err := sdNotify("READY=1"); err == nil {
		t.Error("NOTIFY_SOCKET naming no socket: no error")
	}
}

// TestActivityLED runs edgesink with board.led: activity on an LED laid out
// as sysfs does: while it runs the kernel trigger is switched off, a mail
// lights the LED, and at exit the old trigger is back.
func TestActivityLED(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"trigger": "none [mmc0] timer", "brightness": "0"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	attr := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cfg := testConfig(t, brokerEmbedded, "")
	cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
	cfg.Board.LED, cfg.Board.LEDPath = "activity", dir
	es := startEdgesink(t, cfg)
	if got := attr("trigger"); got != "none" {
		t.Fatalf("trigger while running = %q, want none", got)
	}
	// Watch the brightness attribute while a mail goes through.
	lit := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			if b, _ := os.ReadFile(filepath.Join(dir, "brightness")); string(b) == "1" {
				close(lit)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"send-test", "--server", es.SMTPAddr}, &stdout, &stderr); code != exitOK {
		t.Fatalf("send-test: %d %s", code, stderr.String())
	}
	select {
	case <-lit:
	case <-time.After(5 * time.Second):
		t.Fatal("LED never lit for an accepted mail")
	}
	if err := es.stop(); err != nil {
		t.Fatal(err)
	}
	if got := attr("trigger"); got != "mmc0" {
		t.Errorf("trigger after exit = %q, want mmc0", got)
	}
	if got := attr("brightness"); got != "0" {
		t.Errorf("brightness after exit = %q, want 0", got)
	}
}

func TestBoardSettingsRejected(t *testing.T) {
	for _, conf := range []string{"board:\n  led: blink\n", "board:\n  led: activity\n  led_path: /nonexistent/led\nmqtt:\n  broker: none\nserial:\n  device: /dev/null\n"} {
		cfg, err := ParseConfig([]byte(conf))
		if err != nil {
			if !strings.Contains(err.Error(), "board.led") {
				t.Errorf("%q: error %v does not name board.led", conf, err)
			}
			continue
		}
		cfg.SMTP.Listen = Addrs{"127.0.0.1:0"}
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.Spool.Dir = t.TempDir()
		err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), "led") {
			t.Errorf("%q: serve = %v, want an LED error", conf, err)
		}
	}
}
