// Package classify is the stage that decides what a mail means: between
// extraction and the queue it sets each alert's Event, once, so the queue
// stores the decision and no output parses mail again. Device templates
// will decide here; until they exist no mail is recognised and Event stays
// nil (the alert's JSON is unchanged).
package classify

import (
	"context"

	"github.com/edgesink/edgesink/sink"
)

// Stage classifies every alert and hands it on.
type Stage struct {
	next sink.Handler
}

var _ sink.Handler = (*Stage)(nil)

// New returns the stage in front of next.
func New(next sink.Handler) *Stage { return &Stage{next: next} }

// Handle sets a.Event, unless an earlier stage did, and passes a on; the
// next stage's answer is the device's.
func (s *Stage) Handle(ctx context.Context, a *sink.Alert) error {
	if a.Event == nil {
		a.Event = Classify(a)
	}
	return s.next.Handle(ctx, a)
}

// Classify returns the event a reports, or nil when no device template
// recognises it (today: always).
func Classify(a *sink.Alert) *sink.Event { return nil }
