package spool

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/spool/disktest"
	"github.com/edgesink/edgesink/sink"
)

// downFor makes an output refuse, for a while, the alerts of one device.
func downFor(device string) func(*sink.Alert, int) error {
	return func(a *sink.Alert, _ int) error {
		if a.Device == device {
			return errDown
		}
		return nil
	}
}

// TestDeliveredStayDelivered: alerts delivered from a segment that stays
// (another alert in it is still queued) are marked removed in it, so the
// next start delivers only the one still queued.
func TestDeliveredStayDelivered(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt", fail: downFor("ups")}
	s := open(t, Config{Dir: dir}, out)
	handle(t, s, testAlert(0, "ups"))
	for i := 1; i <= 5; i++ {
		handle(t, s, testAlert(i, "cam"))
	}
	waitFor(t, "five deliveries", func() bool { return len(out.delivered()) == 5 }, func() any { return len(out.delivered()) })
	s.Close()
	if segs, _ := filepath.Glob(filepath.Join(dir, queueDir, "*"+segmentExt)); len(segs) != 1 {
		t.Fatalf("segments after close: %v, want the one still holding an alert", segs)
	}

	up := &fakeOutput{name: "mqtt"}
	s2 := open(t, Config{Dir: dir}, up)
	drain(t, s2)
	if got := up.delivered(); len(got) != 1 || got[0].Subject != "alert 0" {
		t.Fatalf("the next start delivered %d alerts, want only alert 0 (the others were delivered before)", len(got))
	}
	s2.Close()
	if files, _ := filepath.Glob(filepath.Join(dir, queueDir, "*")); len(files) != 0 {
		t.Errorf("queue after everything was delivered and the spool closed: %v", files)
	}
}

// TestSegmentsRotate: a full segment gives way to a new one; each goes once
// every alert in it is delivered.
func TestSegmentsRotate(t *testing.T) {
	defer func(n int64) { segmentSize = n }(segmentSize)
	segmentSize = 4096
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir}, out)
	for i := range 40 {
		a := testAlert(i, "cam")
		a.Text = strings.Repeat("x", 500)
		handle(t, s, a)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, queueDir, "*"+segmentExt))
	if len(segs) < 5 {
		t.Fatalf("40 alerts of 500 bytes in %d segments of 4 KiB", len(segs))
	}
	for _, seg := range segs {
		if fi, err := os.Stat(seg); err != nil || fi.Size() != 4096 {
			t.Fatalf("segment %s: %v %d bytes, want 4096 (zero-filled)", seg, err, fi.Size())
		}
	}
	out.setFail(nil)
	drain(t, s)
	if len(out.delivered()) != 40 {
		t.Fatalf("delivered %d, want 40", len(out.delivered()))
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, queueDir, "*"+segmentExt)); len(segs) > 2 {
		t.Fatalf("after delivery %d segments are left, want at most the one being written and the next", len(segs))
	}
	s.Close()
	if files, _ := filepath.Glob(filepath.Join(dir, queueDir, "*")); len(files) != 0 {
		t.Errorf("queue after close: %v", files)
	}
}

// TestOneSegmentToStart: the first mails after a start make one segment,
// not a spare beside it (a megabyte of zeros written for nothing).
func TestOneSegmentToStart(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir}, out)
	for i := range 3 {
		handle(t, s, testAlert(i, "cam"))
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, queueDir, "*"+segmentExt)); len(segs) != 1 {
		t.Fatalf("segments after three small alerts: %v, want one", segs)
	}
}

// TestSegmentCutShort: a segment whose last batch a crash cut short keeps
// the alerts written before it; the torn one (never acknowledged) and
// those removed in place are not delivered.
func TestSegmentCutShort(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, queueDir), 0o700); err != nil {
		t.Fatal(err)
	}
	var data []byte
	for i := range 4 {
		rec, err := encodeRecord(testAlert(i, "cam"), Route{}, false)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 1:
			rec[0] = removedMark // delivered before the crash
		case 3:
			rec = rec[:len(rec)/2] // the batch being written
		}
		data = append(data, rec...)
		if i != 3 {
			data = append(data, '\n')
		}
	}
	data = append(data, make([]byte, 4096)...) // the room not yet written
	if err := os.WriteFile(filepath.Join(dir, queueDir, testAlert(0, "cam").ID+segmentExt), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	out := &fakeOutput{name: "mqtt"}
	s := openLogged(t, Config{Dir: dir}, &logged, out)
	drain(t, s)
	var got []string
	for _, a := range out.delivered() {
		got = append(got, a.Subject)
	}
	if strings.Join(got, ",") != "alert 0,alert 2" {
		t.Fatalf("delivered %q, want alerts 0 and 2", got)
	}
	if !strings.Contains(logged.String(), "cut short by a crash") {
		t.Errorf("the torn batch was not logged: %s", logged.String())
	}
	if items, err := List(dir); err != nil || len(items) != 0 {
		t.Errorf("List after delivery = %+v, %v; want nothing (the torn line is not an alert)", items, err)
	}
}

// TestPowerCutKeepsDeadLettersDead: a dead letter's removal from a segment
// that stays (another alert in it is still queued) survives a power cut:
// the alert does not come back from the dead.
func TestPowerCutKeepsDeadLettersDead(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "spool")
	// The dead letter is the last write: no later batch's flush carries
	// its removal to the disk. Its device must not wait in the ups's lane.
	refused := "nas"
	for _, d := range []string{"nas", "nvr", "printer", "doorbell", "alarm"} {
		if laneOf(d, DefaultLanes) != laneOf("ups", DefaultLanes) {
			refused = d
			break
		}
	}
	out := &fakeOutput{name: "mqtt", fail: func(a *sink.Alert, _ int) error {
		if a.Device == refused {
			return errors.New("payload too large")
		}
		return errDown
	}}
	s := open(t, Config{Dir: dir, MaxAttempts: 1}, out)
	handle(t, s, testAlert(0, "ups"))
	handle(t, s, testAlert(1, refused)) // in the same segment
	waitFor(t, "the dead letter", func() bool { return s.Stats().Dead == 1 }, func() any { return s.Stats() })
	s.Close()
	disk.CutAndMount(t)

	items, err := List(dir)
	if err != nil || len(items) != 2 {
		t.Fatalf("after the power cut: %+v %v, want alert 0 queued and alert 1 dead", items, err)
	}
	for _, it := range items {
		if want := map[string]string{"alert 0": "queued", "alert 1": "dead"}[it.Subject]; it.State != want {
			t.Fatalf("after the power cut %s is %s, want %s", it.Subject, it.State, want)
		}
	}
}

// openLogged is open with the spool's log written to w.
func openLogged(t *testing.T, cfg Config, w io.Writer, outs ...forward.Forwarder) *Spool {
	t.Helper()
	s, err := Open(cfg, slog.New(slog.NewTextHandler(w, nil)), outs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPowerCutKeepsRetriedDeadLetterDead: an alert put back with Retry
// (a file of its own in queue/) that an output refuses again is removed
// durably: after a power cut it is a dead letter, not queued once more.
func TestPowerCutKeepsRetriedDeadLetterDead(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "spool")
	refuse := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errors.New("payload too large") }}
	s := open(t, Config{Dir: dir, MaxAttempts: 1}, refuse)
	a := testAlert(0, "cam")
	handle(t, s, a)
	drain(t, s)
	s.Close()
	if err := Retry(dir, a.ID); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, Config{Dir: dir, MaxAttempts: 1}, refuse)
	drain(t, s2)
	s2.Close()
	disk.CutAndMount(t)

	items, err := List(dir)
	if err != nil || len(items) != 1 || items[0].State != "dead" {
		t.Fatalf("after the power cut: %+v %v, want the alert dead once, not queued", items, err)
	}
}
