package serial

import (
	"testing"

	"github.com/edgesink/edgesink/sink"
)

// TestRoutedLine: a rule's line template, {site} and event placeholders
// included, goes through the same cleaning as every line: no control
// characters from a mail reach the port, and the line is cut.
func TestRoutedLine(t *testing.T) {
	p, err := New(Config{Device: "/dev/null", Site: "barn", MaxLineLength: 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.With("{site} {event}/{state} {camera}: {count}")
	if err != nil {
		t.Fatal(err)
	}
	a := &sink.Alert{Count: 7, Event: &sink.Event{Type: "motion", State: "start", Camera: "Gar\r\nage\x1b[2J\x00"}}
	if got, want := string(f.(routedLine).Line(a)), "barn motion/start Gar  age[2J: 7\r\n"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	a.Event.Camera = "a very long camera name that goes on and on"
	if got := f.(routedLine).Line(a); len(got) != 40+2 {
		t.Errorf("line %q not cut at 40 bytes", got)
	}
	if _, err := p.With("{nope}"); err == nil {
		t.Error("a bad template accepted")
	}
	if again, _ := p.With("{site} {event}/{state} {camera}: {count}"); again != f {
		t.Error("the parsed template is not cached")
	}
}
