package mqtt

import (
	"testing"

	"github.com/edgesink/edgesink/sink"
)

// TestRouteTopic: a rule's topic fills {base} and {site}, and every value
// from a mail is one sanitized level, however hostile.
func TestRouteTopic(t *testing.T) {
	tm, err := RouteTopic("edgesink/home", "home", "{base}/cams/{camera}/{event}/{state}/{site}")
	if err != nil {
		t.Fatal(err)
	}
	a := &sink.Alert{Device: "nvr", Event: &sink.Event{Type: "motion", State: "start", Camera: "../a/+/#\x00\x07 b"}}
	if got, want := topicOf(tm, a), "edgesink/home/cams/.._a______ b/motion/start/home"; got != want {
		t.Errorf("topic %q, want %q", got, want)
	}
	a.Event = nil
	if got, want := topicOf(tm, a), "edgesink/home/cams/"+sink.UnknownDevice+"/"+sink.UnknownDevice+"/"+sink.UnknownDevice+"/home"; got != want {
		t.Errorf("no event: %q, want %q", got, want)
	}
	for _, bad := range []string{"cams/#", "{base}/+/x", "/x", "{nope}"} {
		if _, err := RouteTopic("edgesink", "", bad); err == nil {
			t.Errorf("RouteTopic(%q) accepted", bad)
		}
	}
}
