package forward

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
)

func testAlert() *sink.Alert {
	return &sink.Alert{
		ID:         "18ea9dffaf9edbd30f305ce4",
		ReceivedAt: time.Date(2026, 11, 21, 3, 14, 7, 0, time.UTC),
		RemoteAddr: "192.0.2.10:40000",
		MailFrom:   "cam-garage@cams.lan",
		RcptTo:     []string{"Alerts@edgesink.lan", "ops@edgesink.lan"},
		From:       []string{"cam-garage@cams.lan"},
		Subject:    "Motion Detection Alarm",
		Text:       "\n-----\n  EVENT TYPE: Motion  \nsecond line\n",
		Device:     "cam-garage",
		Size:       1722,
	}
}

func TestTemplate(t *testing.T) {
	tests := []struct {
		tmpl, want string
	}{
		{"{received_at} {device} {subject}: {text_first_line}", "2026-11-21T03:14:07Z cam-garage Motion Detection Alarm: EVENT TYPE: Motion"},
		{"edgesink/{device}/alert", "edgesink/cam-garage/alert"},
		{"{rcpt_local}/{from_domain}", "Alerts/cams.lan"},
		{"{id} {size} {attachments} {from} {rcpt_to} {mail_from}", "18ea9dffaf9edbd30f305ce4 1722 0 cam-garage@cams.lan Alerts@edgesink.lan cam-garage@cams.lan"},
		{"no placeholders", "no placeholders"},
		{"", ""},
	}
	for _, tt := range tests {
		tm, err := ParseTemplate(tt.tmpl)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tt.tmpl, err)
		}
		if got := tm.Execute(testAlert(), nil); got != tt.want {
			t.Errorf("%q => %q, want %q", tt.tmpl, got, tt.want)
		}
	}
	for _, bad := range []string{"{nope}", "{device", "device}", "{}", "a{b{c}}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
	tm, _ := ParseTemplate("[{subject}]")
	if got := tm.Execute(testAlert(), strings.ToUpper); got != "[MOTION DETECTION ALARM]" {
		t.Errorf("escape not applied: %q", got)
	}
}

func TestFromDomainFallsBackToEnvelope(t *testing.T) {
	a := testAlert()
	a.From = nil
	a.MailFrom = "ups@rack.lan"
	tm, _ := ParseTemplate("{from_domain}")
	if got := tm.Execute(a, nil); got != "rack.lan" {
		t.Errorf("got %q", got)
	}
}

type tempErr struct{}

func (tempErr) Error() string   { return "down" }
func (tempErr) Temporary() bool { return true }

func TestFanout(t *testing.T) {
	ok := Func{"ok", func(context.Context, *sink.Alert) error { return nil }}
	down := Func{"down", func(context.Context, *sink.Alert) error { return Temporary(errors.New("broker unreachable")) }}
	broken := Func{"broken", func(context.Context, *sink.Alert) error { return errors.New("refused") }}
	panics := Func{"panics", func(context.Context, *sink.Alert) error { panic("boom") }}

	tests := []struct {
		name      string
		fs        []Forwarder
		wantErr   bool
		temporary bool
	}{
		{"all ok", []Forwarder{ok, ok}, false, false},
		{"one down", []Forwarder{ok, down}, true, true},
		{"down and broken", []Forwarder{broken, down}, true, true},
		{"broken only", []Forwarder{ok, broken}, true, false},
		{"panic is an error", []Forwarder{ok, panics}, true, false},
		{"no outputs", nil, false, false},
	}
	for _, tt := range tests {
		err := NewFanout(nil, tt.fs...).Handle(context.Background(), testAlert())
		if (err != nil) != tt.wantErr || sink.Temporary(err) != tt.temporary {
			t.Errorf("%s: err %v (temporary %v)", tt.name, err, sink.Temporary(err))
		}
	}
	if got := NewFanout(nil, ok, down).Outputs(); strings.Join(got, ",") != "ok,down" {
		t.Errorf("Outputs() = %q", got)
	}
}

// TestFanoutConcurrent: outputs run side by side, so a slow one does not
// add its time to the others'. Each output waits until both have started;
// run one after the other, the first would wait until the deadline.
func TestFanoutConcurrent(t *testing.T) {
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	barrier := func(ctx context.Context, _ *sink.Alert) error {
		arrived.Done()
		select {
		case <-both:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := NewFanout(nil, Func{"a", barrier}, Func{"b", barrier}).Handle(ctx, testAlert()); err != nil {
		t.Fatalf("outputs did not run concurrently: %v", err)
	}
}
