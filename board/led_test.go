package board

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeLED lays out a sysfs LED directory as the kernel does (regular files
// stand in for the attributes; the code under test only opens and writes).
func fakeLED(t *testing.T, trigger string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"trigger": trigger, "brightness": "0"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readAttr(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLEDBlinksAndRestoresTrigger(t *testing.T) {
	dir := fakeLED(t, "none timer [mmc0] heartbeat")
	led, err := OpenLED(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAttr(t, dir, "trigger"); got != "none" {
		t.Fatalf("trigger while held = %q, want none", got)
	}
	led.Blink()
	if got := readAttr(t, dir, "brightness"); got != "1" {
		t.Fatalf("brightness during blink = %q, want 1", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for readAttr(t, dir, "brightness") != "0" {
		if time.Now().After(deadline) {
			t.Fatal("LED still lit 5s after a blink")
		}
		time.Sleep(10 * time.Millisecond)
	}
	led.Blink()
	if err := led.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAttr(t, dir, "trigger"); got != "mmc0" {
		t.Errorf("trigger after Close = %q, want mmc0 back", got)
	}
	if got := readAttr(t, dir, "brightness"); got != "0" {
		t.Errorf("brightness after Close = %q, want 0", got)
	}
	led.Blink() // after Close: no effect, no panic
	if err := led.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenLEDErrors(t *testing.T) {
	if _, err := OpenLED(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("OpenLED on a missing LED: no error")
	}
	dir := fakeLED(t, "[none]")
	if err := os.Chmod(filepath.Join(dir, "trigger"), 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		t.Log("running as root: read-only attribute case not checkable")
		return
	}
	if _, err := OpenLED(dir); err == nil {
		t.Error("OpenLED with a read-only trigger: no error")
	}
}

func TestActiveTrigger(t *testing.T) {
	for in, want := range map[string]string{
		"none [mmc0] timer":  "mmc0",
		"[none] heartbeat\n": "none",
		"actpwr":             "none",
	} {
		if got := activeTrigger(in); got != want {
			t.Errorf("activeTrigger(%q) = %q, want %q", in, got, want)
		}
	}
}
