// Package spooltest leaves in a spool directory what earlier runs of
// edgesink leave there, for the tests of whatever finds it later: the
// spool commands and a daemon started on it.
package spooltest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
)

// Alert is a minimal alert from device "cam" with the given subject, a
// fresh ID and every list empty rather than nil, as extraction makes them.
func Alert(subject string) *sink.Alert {
	return &sink.Alert{ID: sink.NewID(time.Now()), ReceivedAt: time.Now().UTC(), Device: "cam", Subject: subject,
		RcptTo: []string{}, From: []string{}, To: []string{}, Attachments: []sink.Attachment{}, ParseErrors: []string{}}
}

// DeadLetter leaves in dir what an earlier run leaves when its MQTT output
// refused an alert for good: one dead letter. It returns the alert.
func DeadLetter(t testing.TB, dir, subject string) *sink.Alert {
	t.Helper()
	refuse := forward.Func{ID: "mqtt", F: func(context.Context, *sink.Alert) error { return errors.New("payload too large") }}
	sp, err := spool.Open(spool.Config{Dir: dir, MaxAttempts: 1, RetryMin: time.Millisecond, RetryMax: time.Millisecond}, nil, refuse)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	a := Alert(subject)
	if err := sp.Handle(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sp.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}
