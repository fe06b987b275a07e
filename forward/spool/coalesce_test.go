package spool

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
)

// The alerts here carry their Event as sink/classify sets it.

func eventAlert(i int, device, typ, channel, state string) *sink.Alert {
	a := testAlert(i, device)
	a.Event = &sink.Event{Type: typ, State: state, Channel: channel}
	return a
}

func motion(i int, channel, state string) *sink.Alert {
	return eventAlert(i, "nvr", "motion", channel, state)
}

// accounted is what a consumer can count from what it received: every
// mail id an alert stands for (its own, or its folded_ids), how many times.
func accounted(got []*sink.Alert) (ids map[string]int, sum int) {
	ids = map[string]int{}
	for _, a := range got {
		switch {
		case a.Synthetic:
		case a.Count > 0:
			sum += a.Count
			for _, id := range a.FoldedIDs {
				ids[id]++
			}
		default:
			sum++
			ids[a.ID]++
		}
	}
	return ids, sum
}

// waitFor polls until cond holds; timers in these tests are short, and a
// failure says what was last seen.
func waitFor(t *testing.T, what string, cond func() bool, seen func() any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %v", what, seen())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func summary(got []*sink.Alert) []string {
	var out []string
	for _, a := range got {
		s := a.ID
		if a.Event != nil {
			s += " " + a.Event.Channel + "/" + a.Event.Type + "/" + a.Event.State
		}
		if a.Count > 0 {
			s += " count=" + itoa(a.Count)
		}
		if a.Synthetic {
			s += " synthetic"
		}
		out = append(out, s)
	}
	return out
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestCoalesceStorm: 50 motion alerts of one NVR channel become the first
// (at once), one follow-up counting the other 49 with their ids and times,
// and a synthetic stop auto_stop after the last; another channel of the
// same NVR is a key of its own; nothing is left in the queue.
func TestCoalesceStorm(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt"}
	s := open(t, Config{Dir: dir, Coalesce: CoalesceConfig{Window: 5 * time.Second,
		AutoStop: map[string]time.Duration{"motion": 700 * time.Millisecond}}}, out)
	var ids []string
	began := time.Now()
	for i := range 50 {
		a := motion(i, "1", "start")
		a.Text, a.HTML = strings.Repeat("motion on channel 1\n", 200), strings.Repeat("<p>x</p>", 500)
		ids = append(ids, a.ID)
		handle(t, s, a)
		if i == 0 {
			handle(t, s, motion(1000, "2", "start")) // another channel: its own first
		}
	}
	burst := time.Since(began)
	if burst < 700*time.Millisecond {
		// Before the auto-stop: exactly the two firsts are out, the rest is folded.
		waitFor(t, "the firsts", func() bool { return len(out.delivered()) >= 2 }, func() any { return summary(out.delivered()) })
		if got := out.delivered(); len(got) != 2 || got[0].Count != 0 || got[1].Count != 0 {
			t.Fatalf("before the window closed: %v", summary(got))
		}
	}
	waitFor(t, "two synthetic stops", func() bool {
		n := 0
		for _, a := range out.delivered() {
			if a.Synthetic {
				n++
			}
		}
		return n == 2
	}, func() any { return summary(out.delivered()) })
	drain(t, s)

	var ch1 []*sink.Alert
	for _, a := range out.delivered() {
		if a.Event.Channel == "1" {
			ch1 = append(ch1, a)
		}
	}
	got, sum := accounted(ch1)
	if sum != 50 || len(got) != 50 {
		t.Fatalf("channel 1: counts add to %d over %d distinct ids, want 50: %v", sum, len(got), summary(ch1))
	}
	for _, id := range ids {
		if got[id] != 1 {
			t.Fatalf("mail %s accounted %d times: %v", id, got[id], summary(ch1))
		}
	}
	if len(ch1) != 3 {
		t.Fatalf("channel 1 sent %d messages (burst took %v), want first, follow-up, stop: %v", len(ch1), burst, summary(ch1))
	}
	first, follow, stop := ch1[0], ch1[1], ch1[2]
	if first.ID != ids[0] || first.Count != 0 || first.Text == "" {
		t.Errorf("first: %+v", first)
	}
	if follow.Count != 49 || !slices.Equal(follow.FoldedIDs, ids[1:]) || follow.ID != ids[49]+"-folded" ||
		!follow.FirstAt.Equal(time.Unix(1800000000, 1)) || !follow.LastAt.Equal(time.Unix(1800000000, 49)) {
		t.Errorf("follow-up: id %s count %d first %v last %v ids %v", follow.ID, follow.Count, follow.FirstAt, follow.LastAt, follow.FoldedIDs)
	}
	if follow.HTML != "" || follow.Text != "motion on channel 1" {
		t.Errorf("follow-up keeps the bodies: text %q html %d bytes", follow.Text, len(follow.HTML))
	}
	if !stop.Synthetic || stop.Event.State != "stop" || stop.Event.Type != "motion" || stop.ID != ids[49]+"-stop" || stop.Count != 0 {
		t.Errorf("stop: %+v %+v", stop, stop.Event)
	}
	if n, _ := s.Len(); n != 0 || len(queueFiles(t, dir)) != 0 {
		t.Fatalf("left in the queue: %d alerts, files %v", n, queueFiles(t, dir))
	}
}

// TestCoalesceWindowCloses: with no auto-stop for the type, the follow-up
// goes out when the window closes; the next alert opens a new window and
// goes out at once.
func TestCoalesceWindowCloses(t *testing.T) {
	out := &fakeOutput{name: "mqtt"}
	s := open(t, Config{Mode: ModeMemory, Coalesce: CoalesceConfig{Window: 300 * time.Millisecond}}, out)
	for i := range 5 {
		handle(t, s, eventAlert(i, "ups", "on_battery", "", "none"))
	}
	waitFor(t, "the follow-up", func() bool { return len(out.delivered()) == 2 }, func() any { return summary(out.delivered()) })
	handle(t, s, eventAlert(10, "ups", "on_battery", "", "none"))
	waitFor(t, "a new first", func() bool { return len(out.delivered()) == 3 }, func() any { return summary(out.delivered()) })
	got := out.delivered()
	if got[0].Count != 0 || got[1].Count != 4 || got[2].Count != 0 || got[2].Subject != "alert 10" {
		t.Fatalf("%v", summary(got))
	}
	for _, a := range got {
		if a.Synthetic {
			t.Fatalf("a type without auto_stop got a stop: %v", summary(got))
		}
	}
}

// TestCoalesceStopFlushes: a stop sends what its key folded first, is never
// folded itself, ends the key's start (no synthetic stop), and the next
// start goes out at once.
func TestCoalesceStopFlushes(t *testing.T) {
	out := &fakeOutput{name: "mqtt"}
	s := open(t, Config{Mode: ModeMemory, Coalesce: CoalesceConfig{Window: time.Hour,
		AutoStop: map[string]time.Duration{"motion": 300 * time.Millisecond}}}, out)
	for i := range 4 {
		handle(t, s, motion(i, "3", "start"))
	}
	handle(t, s, motion(4, "3", "stop"))
	handle(t, s, motion(5, "3", "stop")) // a second stop: still not folded
	handle(t, s, motion(6, "3", "start"))
	handle(t, s, motion(7, "3", "stop"))
	drain(t, s)
	time.Sleep(400 * time.Millisecond) // past auto_stop: nothing more may come
	want := []string{"start", "start count=3", "stop", "stop", "start", "stop"}
	var have []string
	for _, a := range out.delivered() {
		h := a.Event.State
		if a.Count > 0 {
			h += " count=" + itoa(a.Count)
		}
		if a.Synthetic {
			h += " synthetic"
		}
		have = append(have, h)
	}
	if !slices.Equal(have, want) {
		t.Fatalf("delivered %v, want %v", have, want)
	}
}

// TestNotCoalesced: alerts without an event, of type other, and every alert
// in mode off or with coalescing disabled go out one by one.
func TestNotCoalesced(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		mk   func(i int) *sink.Alert
	}{
		{"no event", Config{Mode: ModeMemory}, func(i int) *sink.Alert { return testAlert(i, "cam") }},
		{"type other", Config{Mode: ModeMemory}, func(i int) *sink.Alert { return eventAlert(i, "cam", "other", "", "none") }},
		{"mode off", Config{Mode: ModeOff}, func(i int) *sink.Alert { return motion(i, "1", "start") }},
		{"disabled", Config{Mode: ModeMemory, Coalesce: CoalesceConfig{Disabled: true}}, func(i int) *sink.Alert { return motion(i, "1", "start") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := &fakeOutput{name: "mqtt"}
			s := open(t, tt.cfg, out)
			for i := range 10 {
				handle(t, s, tt.mk(i))
			}
			drain(t, s)
			if got := out.delivered(); len(got) != 10 || got[9].Count != 0 {
				t.Fatalf("%v", summary(got))
			}
		})
	}
}

// TestCoalesceCrashReplays: the folded alerts of a window that had not
// closed are still in the queue at the next start (as at a kill -9: the
// outputs were down), stored small, and go out at once as a follow-up:
// the counts over distinct ids still add to every mail.
func TestCoalesceCrashReplays(t *testing.T) {
	dir := t.TempDir()
	down := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir, Coalesce: CoalesceConfig{Window: time.Hour}}, down)
	var big int64
	for i := range 50 {
		a := motion(i, "1", "start")
		a.HTML = strings.Repeat("<p>snow</p>", 1000)
		handle(t, s, a)
		if i == 0 {
			_, big = s.Len()
		}
	}
	if _, bytes := s.Len(); bytes-big > 49*2000 {
		t.Fatalf("49 folded alerts take %d bytes in the queue; their bodies were kept", bytes-big)
	}
	s.Close()

	out := &fakeOutput{name: "mqtt"}
	s = open(t, Config{Dir: dir, Coalesce: CoalesceConfig{Window: time.Hour}}, out)
	waitFor(t, "the replay", func() bool { return len(out.delivered()) == 2 }, func() any { return summary(out.delivered()) })
	got := out.delivered()
	ids, sum := accounted(got)
	if sum != 50 || len(ids) != 50 || got[1].Count != 49 {
		t.Fatalf("after the restart: counts %d over %d ids: %v", sum, len(ids), summary(got))
	}
	drain(t, s)
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Fatalf("queue not empty after the follow-up was delivered: %v", files)
	}
}

// TestCoalesceFollowUpFails: a follow-up an output keeps refusing is a dead
// letter with every folded id; its folded alerts leave the queue with it.
func TestCoalesceFollowUpFails(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt"}
	out.setFail(func(a *sink.Alert, _ int) error {
		if a.Count > 0 {
			return os.ErrPermission // final
		}
		return nil
	})
	s := open(t, Config{Dir: dir, MaxAttempts: 2, Coalesce: CoalesceConfig{Window: 100 * time.Millisecond}}, out)
	for i := range 5 {
		handle(t, s, motion(i, "1", "none"))
	}
	waitFor(t, "the dead letter", func() bool { n, _ := s.Len(); return n == 0 }, func() any { return summary(out.delivered()) })
	items, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].State != "dead" || !strings.HasSuffix(items[0].ID, "-folded") {
		t.Fatalf("spool holds %+v", items)
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Fatalf("queue not empty: %v", files)
	}
}

// TestAutoStopAfterRestart: a key left in start gets its synthetic stop
// auto_stop after its latest start, across a restart: from coalesce.json,
// or, when the crash came before that file was written, from the start
// record still queued. A key whose start is long past stops at once.
func TestAutoStopAfterRestart(t *testing.T) {
	const autoStop = 1500 * time.Millisecond
	cfg := func(dir string) Config {
		return Config{Dir: dir, Coalesce: CoalesceConfig{AutoStop: map[string]time.Duration{"motion": autoStop}}}
	}
	for _, tt := range []struct {
		name      string
		delivered bool // the start was delivered before the restart (only the file knows it)
		dropFile  bool // the crash came before coalesce.json was written
		age       time.Duration
	}{
		{name: "from the file", delivered: true, age: time.Second},
		{name: "from the queued start", dropFile: true, age: time.Second},
		{name: "long past", delivered: true, age: time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := &fakeOutput{name: "mqtt"}
			if !tt.delivered {
				out.fail = func(*sink.Alert, int) error { return errDown }
			}
			s := open(t, cfg(dir), out)
			start := motion(1, "4", "start")
			start.ReceivedAt = time.Now().Add(-tt.age).UTC()
			handle(t, s, start)
			if tt.delivered {
				drain(t, s)
			}
			s.Close()
			if tt.dropFile {
				if err := os.Remove(filepath.Join(dir, coalesceFile)); err != nil {
					t.Fatal(err)
				}
			} else if tt.age > 0 {
				rewriteLastAt(t, dir, start.ReceivedAt)
			}

			out2 := &fakeOutput{name: "mqtt"}
			reopened := time.Now()
			s = open(t, cfg(dir), out2)
			var stop *sink.Alert
			waitFor(t, "the synthetic stop", func() bool {
				for _, a := range out2.delivered() {
					if a.Synthetic {
						stop = a
						return true
					}
				}
				return false
			}, func() any { return summary(out2.delivered()) })
			took, want := time.Since(reopened), max(0, autoStop-tt.age)
			if stop.ID != start.ID+"-stop" || stop.Event.State != "stop" || stop.Event.Channel != "4" {
				t.Fatalf("stop %+v", stop)
			}
			if took < want-300*time.Millisecond || took > want+600*time.Millisecond {
				t.Fatalf("stop %v after the restart, want %v (auto_stop after a start %v old)", took, want, tt.age)
			}
			drain(t, s)
			s.Close()
			if data, _ := os.ReadFile(filepath.Join(dir, coalesceFile)); !strings.Contains(string(data), `"started":[]`) {
				t.Fatalf("coalesce.json still names a key after its stop: %s", data)
			}
		})
	}
}

// rewriteLastAt sets every last_at in coalesce.json to at.
func rewriteLastAt(t *testing.T, dir string, at time.Time) {
	t.Helper()
	path := filepath.Join(dir, coalesceFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil || len(f.Started) != 1 {
		t.Fatalf("coalesce.json: %s %v", data, err)
	}
	f.Started[0].LastAt = at
	data, _ = json.Marshal(f)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCoalesceIdleWritesNothing: coalesce.json is written when a key enters
// start and when its stop is delivered, not per mail of a storm.
func TestCoalesceIdleWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt"}
	s := open(t, Config{Dir: dir, Coalesce: CoalesceConfig{Window: time.Hour,
		AutoStop: map[string]time.Duration{"motion": time.Hour}}}, out)
	handle(t, s, motion(0, "1", "start"))
	path := filepath.Join(dir, coalesceFile)
	waitFor(t, "coalesce.json", func() bool { _, err := os.Stat(path); return err == nil }, func() any { return nil })
	fi, _ := os.Stat(path)
	for i := 1; i < 20; i++ {
		handle(t, s, motion(i, "1", "start"))
	}
	time.Sleep(50 * time.Millisecond) // the writer would have run by now
	if fi2, _ := os.Stat(path); !fi2.ModTime().Equal(fi.ModTime()) || !os.SameFile(fi, fi2) {
		t.Fatal("coalesce.json rewritten during a storm of one key")
	}
}
