package mqtttest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
)

// AwaitSubjects reads alerts until every wanted subject was seen, failing
// the test after timeout, then reads late duplicates still in flight until
// none came for half a second. It returns how often each subject arrived.
func (s *Subscriber) AwaitSubjects(t testing.TB, want []string, timeout time.Duration) map[string]int {
	t.Helper()
	seen := map[string]int{}
	missing := map[string]bool{}
	for _, subject := range want {
		missing[subject] = true
	}
	deadline := time.After(timeout)
	for len(missing) > 0 {
		select {
		case m := <-s.msgs:
			var a sink.Alert
			if err := json.Unmarshal([]byte(m.Payload), &a); err != nil {
				continue
			}
			seen[a.Subject]++
			delete(missing, a.Subject)
		case <-deadline:
			var some []string
			for subject := range missing {
				some = append(some, subject)
				if len(some) == 5 {
					break
				}
			}
			t.Fatalf("%d of %d acknowledged alerts never reached MQTT (e.g. %v)", len(missing), len(want), some)
		}
	}
	// Late duplicates still in flight.
	for {
		select {
		case m := <-s.msgs:
			var a sink.Alert
			if json.Unmarshal([]byte(m.Payload), &a) == nil {
				seen[a.Subject]++
			}
		case <-time.After(500 * time.Millisecond):
			return seen
		}
	}
}

// Duplicates counts the arrivals beyond the first in what AwaitSubjects
// returned (QoS 1 and crash recovery allow them; tests report them).
func Duplicates(seen map[string]int) int {
	d := 0
	for _, n := range seen {
		d += n - 1
	}
	return d
}
