package board

import (
	"os"
	"path/filepath"
	"strings"
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

// TestOpenLEDErrors: OpenLED fails on an LED that is missing or cannot be
// written, whoever runs it (CI runs as root, who may write any regular
// file), and leaves a trigger it did change as it found it.
func TestOpenLEDErrors(t *testing.T) {
	type errCase struct {
		name  string
		setup func(t *testing.T, dir string) // dir holds a fake LED with trigger "none [heartbeat]"
	}
	cases := []errCase{
		{"missing LED", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
		{"no brightness attribute", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "brightness")); err != nil {
				t.Fatal(err)
			}
		}},
		{"brightness is a directory", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "brightness")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "brightness"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"trigger refuses writes", func(t *testing.T, dir string) {
			// A kernel file that reads fine and refuses every write with
			// EIO, root's included, as sysfs refuses a bad trigger.
			if err := os.Remove(filepath.Join(dir, "trigger")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/proc/version", filepath.Join(dir, "trigger")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	if os.Geteuid() != 0 {
		// Root may write a 0444 file; for root, "trigger refuses writes"
		// covers the same path.
		cases = append(cases, errCase{"read-only trigger", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "trigger"), 0o444); err != nil {
				t.Fatal(err)
			}
		}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeLED(t, "none [heartbeat]")
			tc.setup(t, dir)
			led, err := OpenLED(dir)
			if err == nil {
				led.Close()
				t.Fatal("OpenLED: no error")
			}
			if !strings.HasPrefix(err.Error(), "led: ") {
				t.Errorf("error %q does not say it is the LED's", err)
			}
			if fi, statErr := os.Lstat(filepath.Join(dir, "trigger")); statErr == nil && fi.Mode().IsRegular() {
				if got := readAttr(t, dir, "trigger"); got != "heartbeat" && got != "none [heartbeat]" {
					t.Errorf("trigger after a failed OpenLED = %q, want heartbeat back", got)
				}
			}
		})
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
