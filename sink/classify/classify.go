// Package classify is the stage that decides what a mail means: between
// extraction and the queue it names the device (the devices map) and sets
// each alert's Event, once, so the queue stores the decision and no output
// parses mail again.
//
// What a mail means is data, not code: device templates are regular
// expressions over a mail's sender, recipient, device, subject and body,
// built in (embedded JSON under templates/) or given in the configuration.
// Every alert gets an Event; a mail no template knows is
// {"type":"other","state":"none","template":"none"}, never dropped.
// Standard library only.
package classify

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/edgesink/edgesink/sink"
)

// Types is the closed vocabulary of Event.Type. Person, vehicle or face
// detection is motion with a Detail; a degraded RAID array or NAS volume
// is volume_degraded; SMART or disk failures are disk_failure.
var Types = []string{
	"motion", "line_crossing", "intrusion", "tamper", "video_loss", "io_alarm", "sound",
	"disk_failure", "disk_full", "volume_degraded",
	"on_battery", "power_restored", "battery_low",
	"toner_low", "paper_jam", "printer_error",
	"door", "test", "other",
}

// States is the vocabulary of Event.State: start and stop for something
// that lasts, none for a one-off notice.
var States = []string{StateStart, StateStop, StateNone}

// The states, and the template name of a mail nothing recognised.
const (
	StateStart   = "start"
	StateStop    = "stop"
	StateNone    = "none"
	TypeOther    = "other"
	TemplateNone = "none"
)

// IsType reports whether t is a word of Types.
func IsType(t string) bool { return slices.Contains(Types, t) }

// Stage names the device and classifies every alert, and hands it on.
// Its classifier can be swapped while mail flows (SIGHUP); each alert is
// decided by one classifier, old or new, never a mix.
type Stage struct {
	next sink.Handler
	c    atomic.Pointer[Classifier]
}

var _ sink.Handler = (*Stage)(nil)

// New returns the stage in front of next, deciding with c (nil: the
// built-in templates and no devices map).
func New(next sink.Handler, c *Classifier) *Stage {
	s := &Stage{next: next}
	s.Swap(c)
	return s
}

// Swap makes c decide from the next alert on (nil: the built-in
// templates only).
func (s *Stage) Swap(c *Classifier) {
	if c == nil {
		c = Builtin()
	}
	s.c.Store(c)
}

// Handle names a's device and sets a.Event, unless an earlier stage decided
// (a replayed alert keeps what it was given), and passes a on; the next
// stage's answer is the device's.
func (s *Stage) Handle(ctx context.Context, a *sink.Alert) error {
	if a.Event == nil {
		s.c.Load().Apply(a)
	}
	return s.next.Handle(ctx, a)
}
