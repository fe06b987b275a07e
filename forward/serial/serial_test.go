package serial

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/serial/serialtest"
	"github.com/edgesink/edgesink/sink"
)

func alert(subject, text string) *sink.Alert {
	return &sink.Alert{
		ID:         sink.NewID(time.Now()),
		ReceivedAt: time.Date(2026, 11, 21, 3, 14, 7, 0, time.UTC),
		Device:     "ups",
		Subject:    subject,
		Text:       text,
	}
}

func send(t *testing.T, p *Port, a *sink.Alert) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Forward(ctx, a)
}

func TestWriteToPty(t *testing.T) {
	pty := serialtest.StartPty(t)
	p, err := New(Config{Device: pty.Dev, Baud: 115200}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := send(t, p, alert("UPS On Battery", "UPS: On battery power.\nmore")); err != nil {
		t.Fatal(err)
	}
	if got := pty.NextLine(t, 5*time.Second); got != "2026-11-21T03:14:07Z ups UPS On Battery: UPS: On battery power.\r\n" {
		t.Errorf("line %q", got)
	}
	if err := send(t, p, alert("second", "x")); err != nil {
		t.Fatal(err)
	}
	if got := pty.NextLine(t, 5*time.Second); !strings.HasSuffix(got, "ups second: x\r\n") {
		t.Errorf("line %q", got)
	}
}

// TestUnplugReplug: a vanished device fails alerts with a temporary error
// (the device retries) and is reopened as soon as it is back.
func TestUnplugReplug(t *testing.T) {
	pty := serialtest.StartPty(t)
	p, err := New(Config{Device: pty.Dev}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := send(t, p, alert("before", "x")); err != nil {
		t.Fatal(err)
	}
	pty.NextLine(t, 5*time.Second)

	pty.Unplug()
	// The first write after the unplug may still land in the dead pty's
	// buffer; within a couple of alerts the failure must show.
	var failed error
	for i := 0; i < 5 && failed == nil; i++ {
		failed = send(t, p, alert("during", "x"))
	}
	if failed == nil || !sink.Temporary(failed) {
		t.Fatalf("unplugged device: %v, want a temporary error", failed)
	}

	pty.Plug()
	if err := send(t, p, alert("after", "back")); err != nil {
		t.Fatalf("after replug: %v", err)
	}
	if got := pty.NextLine(t, 5*time.Second); !strings.HasSuffix(got, "ups after: back\r\n") {
		t.Errorf("line %q", got)
	}
}

func TestOpenFailsTemporarily(t *testing.T) {
	p, err := New(Config{Device: t.TempDir() + "/ttyNOPE"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(t, p, alert("x", "y")); err == nil || !sink.Temporary(err) {
		t.Fatalf("missing device: %v, want a temporary error", err)
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		tmpl    string
		max     int
		subject string
		text    string
		want    string
	}{
		{"", 0, "UPS On Battery", "line one\nline two", "2026-11-21T03:14:07Z ups UPS On Battery: line one\r\n"},
		{"{subject}", 0, "tab\there\x07bell\x1b[31mred", "", "tab herebell[31mred\r\n"},
		{"{subject}", 8, "0123456789", "", "01234567\r\n"},
		{"{subject}", 8, "ééééé", "", "éééé\r\n"},
		{"{subject}", 8, "aéééé", "", "aééé\r\n"},
		{"{device}|{text_first_line}", 0, "", "\n\n  spaced  \n", "ups|spaced\r\n"},
	}
	for _, tt := range tests {
		p, err := New(Config{Device: "/dev/null", Template: tt.tmpl, MaxLineLength: tt.max}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(p.Line(alert(tt.subject, tt.text))); got != tt.want {
			t.Errorf("template %q: %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Device: "/dev/x", Baud: 10},
		{Device: "/dev/x", DataBits: 9},
		{Device: "/dev/x", Parity: "sometimes"},
		{Device: "/dev/x", StopBits: "3"},
		{Device: "/dev/x", Template: "{nope}"},
		{Device: "/dev/x", MaxLineLength: 3},
	} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	for _, c := range []Config{
		{Device: "/dev/x", Parity: "even", StopBits: "2", DataBits: 7, Baud: 1200},
		{Device: "/dev/x", Parity: "o", StopBits: "1.5"},
	} {
		if _, err := New(c, nil); err != nil {
			t.Errorf("New(%+v): %v", c, err)
		}
	}
}
