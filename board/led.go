package board

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// LED modes for the board.led setting.
const (
	LEDOff      = "off"      // leave the LED alone (default)
	LEDActivity = "activity" // flash it once for each accepted alert
)

// blinkFor is how long the LED stays lit for one alert.
const blinkFor = 150 * time.Millisecond

// LED flashes a sysfs LED (/sys/class/leds/NAME). While edgesink holds it,
// the LED's kernel trigger (on a Pi: SD card activity) is switched to
// "none"; Close puts the old trigger back.
type LED struct {
	dir        string
	oldTrigger string

	mu     sync.Mutex
	timer  *time.Timer
	gen    int // which timer may switch the LED off
	closed bool
}

// OpenLED takes over the LED in dir. It fails when the LED does not exist
// or cannot be written (the service needs write access to its trigger and
// brightness files; the systemd unit grants it).
func OpenLED(dir string) (*LED, error) {
	trigger, err := os.ReadFile(filepath.Join(dir, "trigger"))
	if err != nil {
		return nil, fmt.Errorf("led: %w", err)
	}
	l := &LED{dir: dir, oldTrigger: activeTrigger(string(trigger))}
	if err := l.write("trigger", "none"); err != nil {
		return nil, err
	}
	if err := l.write("brightness", "0"); err != nil {
		_ = l.write("trigger", l.oldTrigger)
		return nil, err
	}
	return l, nil
}

// activeTrigger picks the selected trigger out of sysfs's list, which
// brackets it: "none [mmc0] timer heartbeat".
func activeTrigger(list string) string {
	for _, f := range strings.Fields(list) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return "none"
}

func (l *LED) write(file, value string) error {
	// As `echo 1 > brightness` does: one write(2). O_TRUNC is a no-op on
	// sysfs; never O_CREATE, a missing attribute is an error.
	f, err := os.OpenFile(filepath.Join(l.dir, file), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("led: %w", err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("led: write %s: %w", file, err)
	}
	return nil
}

// Blink lights the LED for a moment and returns at once. Blinks closer
// together than that merge into one longer flash. Errors are ignored: an
// LED is a courtesy, never a reason to refuse mail.
func (l *LED) Blink() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.timer != nil && l.timer.Stop() {
		l.timer.Reset(blinkFor) // still lit: keep it lit a little longer
		return
	}
	_ = l.write("brightness", "1")
	l.gen++
	gen := l.gen
	l.timer = time.AfterFunc(blinkFor, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !l.closed && gen == l.gen {
			_ = l.write("brightness", "0")
		}
	})
}

// Close switches the LED off and gives it back to its old trigger. Safe to
// call twice.
func (l *LED) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	_ = l.write("brightness", "0")
	return l.write("trigger", l.oldTrigger)
}
