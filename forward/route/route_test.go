package route

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink"
)

func alert(device, from, rcpt, subject, text string, ev *sink.Event) *sink.Alert {
	return &sink.Alert{ID: "x", Device: device, MailFrom: from, RcptTo: []string{"other@edgesink", rcpt},
		Subject: subject, Text: text, Event: ev}
}

var env = Env{Outputs: []string{MQTT, Serial}}

// TestDecide: first match wins, every matcher of a rule must match, and an
// alert no rule matches is not matched (today's behaviour).
func TestDecide(t *testing.T) {
	table, err := Compile([]Rule{
		{Name: "printers", Match: Match{Device: "printer*"}, Outputs: "serial", Serial: "{device}: {subject}"},
		{Match: Match{Sender: "*@cams.lan", Event: "motion", State: "start"}, Outputs: "mqtt", Topic: "{base}/cams/{camera}/{event}"},
		{Match: Match{Subject: `(?i)test mail`}, Outputs: "none"},
		{Match: Match{Recipient: "ops@*", Body: `disk \d+ failed`}, Outputs: "both"},
	}, env)
	if err != nil {
		t.Fatal(err)
	}
	motion := &sink.Event{Type: "motion", State: "start", Camera: "Garage"}
	tests := []struct {
		name      string
		a         *sink.Alert
		rule      string
		drop      bool
		outputs   []string
		templates map[string]string
	}{
		{"printer by glob, case-insensitive", alert("Printer-2", "", "", "Toner low", "", nil), "printers", false, []string{"serial"}, map[string]string{"serial": "{device}: {subject}"}},
		{"camera motion start", alert("cam1", "cam1@CAMS.lan", "", "", "", motion), "rule 2", false, []string{"mqtt"}, map[string]string{"mqtt": "{base}/cams/{camera}/{event}"}},
		{"camera motion stop: rule 1 wants start", alert("cam1", "cam1@cams.lan", "", "", "", &sink.Event{Type: "motion", State: "stop"}), "", false, nil, nil},
		{"no event: event matcher fails", alert("cam1", "cam1@cams.lan", "", "", "", nil), "", false, nil, nil},
		{"test mail dropped", alert("nas", "", "", "This is a TEST MAIL", "", nil), "rule 3", true, nil, nil},
		{"recipient and body", alert("nas", "", "ops@edgesink", "", "raid: disk 3 failed", nil), "rule 4", false, []string{"mqtt", "serial"}, nil},
		{"recipient without body", alert("nas", "", "ops@edgesink", "", "all good", nil), "", false, nil, nil},
		{"nothing matches", alert("ups", "ups@lan", "a@b", "On battery", "", nil), "", false, nil, nil},
	}
	for _, tt := range tests {
		d := table.Decide(tt.a)
		if d.Rule != tt.rule || d.Matched != (tt.rule != "") || d.Drop != tt.drop || !slices.Equal(d.Outputs, tt.outputs) ||
			len(d.Templates) != len(tt.templates) {
			t.Errorf("%s: %+v", tt.name, d)
			continue
		}
		for k, v := range tt.templates {
			if d.Templates[k] != v {
				t.Errorf("%s: template %s %q, want %q", tt.name, k, d.Templates[k], v)
			}
		}
	}
	if d := (*Table)(nil).Decide(alert("x", "", "", "", "", nil)); d.Matched {
		t.Error("a nil table matched")
	}
}

// TestCompileErrors: a bad rule is refused at start, naming where.
func TestCompileErrors(t *testing.T) {
	badTopic := errors.New("must not contain '+', '#' or NUL")
	env := Env{Outputs: []string{MQTT}, CheckTopic: func(s string) error {
		if strings.ContainsAny(s, "+#") {
			return badTopic
		}
		return nil
	}}
	for _, tt := range []struct {
		r    Rule
		want string
	}{
		{Rule{Match: Match{Device: "[cam"}}, "rule 1: match.device"},
		{Rule{Match: Match{Subject: "(unclosed"}}, "rule 1: match.subject"},
		{Rule{Outputs: "printer"}, "rule 1: outputs: \"printer\""},
		{Rule{Outputs: "serial"}, "no serial output is configured (serial.device)"},
		{Rule{Outputs: "both"}, "no serial output is configured"},
		{Rule{Outputs: "none", Topic: "x"}, "rule 1: outputs: none"},
		{Rule{Topic: "cams/#"}, "rule 1: topic: must not contain"},
		{Rule{Serial: "{nope}"}, "rule 1: serial"},
	} {
		_, err := Compile([]Rule{tt.r}, env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.r, err, tt.want)
		}
	}
}
