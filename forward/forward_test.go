package forward

import (
	"strings"
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

// TestEventPlaceholders: the event's fields, the count an alert stands
// for, and the instance's site.
func TestEventPlaceholders(t *testing.T) {
	tm, err := ParseTemplate("{site}|{event}|{state}|{channel}|{camera}|{count}")
	if err != nil {
		t.Fatal(err)
	}
	a := testAlert()
	if got := tm.Execute(a, nil); got != "|||||1" {
		t.Errorf("no event, no site: %q", got)
	}
	a.Event = &sink.Event{Type: "motion", State: "start", Channel: "3", Camera: "Garage"}
	a.Count = 49
	if got := tm.WithSite("home").Execute(a, strings.ToUpper); got != "HOME|MOTION|START|3|GARAGE|49" {
		t.Errorf("with event and site: %q", got)
	}
	if got := tm.Execute(a, nil); got != "|motion|start|3|Garage|49" {
		t.Errorf("WithSite changed the original: %q", got)
	}
}
