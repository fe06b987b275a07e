package classify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink"
)

// TestStage: the stage hands every alert on with the next stage's answer,
// keeps an event an earlier stage set, and leaves the JSON of an alert no
// template knows as it was (no "event" key).
func TestStage(t *testing.T) {
	refused := errors.New("spool full")
	var got []*sink.Alert
	next := sink.HandlerFunc(func(_ context.Context, a *sink.Alert) error {
		got = append(got, a)
		if a.Subject == "refuse" {
			return refused
		}
		return nil
	})
	st := New(next)
	plain := &sink.Alert{ID: "1", Subject: "Motion Detection Alarm"}
	if err := st.Handle(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	if err := st.Handle(context.Background(), &sink.Alert{ID: "2", Subject: "refuse"}); !errors.Is(err, refused) {
		t.Fatalf("the next stage's error did not come back: %v", err)
	}
	set := &sink.Event{Type: "motion", State: "start"}
	if err := st.Handle(context.Background(), &sink.Alert{ID: "3", Event: set}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != plain || got[2].Event != set {
		t.Fatalf("alerts handed on: %+v", got)
	}
	data, _ := json.Marshal(plain)
	if strings.Contains(string(data), `"event"`) {
		t.Errorf("an unrecognised alert's JSON changed: %s", data)
	}
}
