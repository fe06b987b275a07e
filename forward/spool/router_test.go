package spool

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/route"
	"github.com/edgesink/edgesink/sink"
)

// templatedOutput is a fakeOutput that records, per alert, the template a
// route chose for it ("" for its own).
type templatedOutput struct {
	*fakeOutput
	used map[string]string // alert id -> template
}

func (o *templatedOutput) With(tmpl string) (forward.Forwarder, error) {
	return forward.Func{ID: o.name, F: func(ctx context.Context, a *sink.Alert) error {
		o.mu.Lock()
		o.used[a.ID] = tmpl
		o.mu.Unlock()
		return o.Forward(ctx, a)
	}}, nil
}

func newTemplated(name string) *templatedOutput {
	return &templatedOutput{fakeOutput: &fakeOutput{name: name}, used: map[string]string{}}
}

func subjects(out *fakeOutput) []string {
	var s []string
	for _, a := range out.delivered() {
		s = append(s, a.Subject)
	}
	return s
}

// TestRouting: a rule decides at accept time which outputs deliver an alert
// and with which template; none drops it; an alert no rule matches goes
// everywhere; a new table (SIGHUP) never reroutes what is queued.
func TestRouting(t *testing.T) {
	dir := t.TempDir()
	mq, ser := newTemplated("mqtt"), newTemplated("serial")
	mq.setFail(func(*sink.Alert, int) error { return errDown }) // hold everything for mqtt at first
	s := open(t, Config{Dir: dir}, mq, ser)
	table, err := route.Compile([]route.Rule{
		{Match: route.Match{Device: "printer*"}, Outputs: "serial", Serial: "{device}: {subject}"},
		{Match: route.Match{Device: "cam*"}, Outputs: "mqtt", Topic: "{base}/cams/{device}"},
		{Match: route.Match{Subject: "^test"}, Outputs: "none"},
	}, route.Env{Outputs: []string{"mqtt", "serial"}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRouter(table)
	printer, cam, test, ups := testAlert(1, "printer-2"), testAlert(2, "cam-garage"), testAlert(3, "nas"), testAlert(4, "ups")
	test.Subject = "test mail"
	for _, a := range []*sink.Alert{printer, cam, test, ups} {
		handle(t, s, a)
	}
	s.SetRouter(nil) // a reload without rules: what is queued keeps its route
	mq.setFail(nil)
	handle(t, s, testAlert(5, "cam-porch"))
	drain(t, s)
	for _, tt := range []struct {
		out  *fakeOutput
		want []string
	}{
		{ser.fakeOutput, []string{"alert 1", "alert 4", "alert 5"}}, // printer, ups, porch camera (no rules now)
		{mq.fakeOutput, []string{"alert 2", "alert 4", "alert 5"}},  // camera, ups, porch camera
	} {
		if got := subjects(tt.out); !slices.Equal(sorted(got), tt.want) {
			t.Errorf("%s got %q, want %q", tt.out.name, got, tt.want)
		}
	}
	if mq.used[cam.ID] != "{base}/cams/{device}" || ser.used[printer.ID] != "{device}: {subject}" {
		t.Errorf("templates used: mqtt %v serial %v", mq.used, ser.used)
	}
	if _, ok := mq.used[ups.ID]; ok {
		t.Errorf("an alert no rule matched was rendered with a rule's template")
	}
}

// TestRoutingSyntheticStop: a synthetic stop is routed by the rules like a
// mail: here a rule sends stops only to serial.
func TestRoutingSyntheticStop(t *testing.T) {
	mq, ser := &fakeOutput{name: "mqtt"}, &fakeOutput{name: "serial"}
	s := open(t, Config{Mode: ModeMemory, Coalesce: CoalesceConfig{AutoStop: map[string]time.Duration{"motion": 100 * time.Millisecond}}}, mq, ser)
	table, err := route.Compile([]route.Rule{{Match: route.Match{State: "stop"}, Outputs: "serial"}}, route.Env{Outputs: []string{"mqtt", "serial"}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRouter(table)
	handle(t, s, motion(1, "1", "start"))
	waitFor(t, "the stop on serial", func() bool { return len(ser.delivered()) == 2 }, func() any { return summary(ser.delivered()) })
	drain(t, s)
	if got := mq.delivered(); len(got) != 1 || got[0].Synthetic {
		t.Fatalf("mqtt got %v, want the start only", summary(got))
	}
	if got := ser.delivered(); !got[1].Synthetic || got[1].Event.State != "stop" {
		t.Fatalf("serial got %v", summary(got))
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
