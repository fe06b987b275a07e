package spool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/spool/disktest"
	"github.com/edgesink/edgesink/sink"
)

// fakeOutput records deliveries; fail decides per call.
type fakeOutput struct {
	name string
	mu   sync.Mutex
	got  []*sink.Alert
	fail func(a *sink.Alert, call int) error
	call int
}

func (f *fakeOutput) Name() string { return f.name }

func (f *fakeOutput) Forward(ctx context.Context, a *sink.Alert) error {
	f.mu.Lock()
	f.call++
	call := f.call
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if err := fail(a, call); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.got = append(f.got, a)
	f.mu.Unlock()
	return nil
}

func (f *fakeOutput) delivered() []*sink.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*sink.Alert(nil), f.got...)
}

func (f *fakeOutput) setFail(fn func(a *sink.Alert, call int) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

var errDown = sink.MarkTemporary(errors.New("broker down"))

func testAlert(i int, device string) *sink.Alert {
	return &sink.Alert{
		ID:         sink.NewID(time.Unix(1800000000, int64(i))),
		ReceivedAt: time.Unix(1800000000, int64(i)).UTC(),
		Device:     device,
		Subject:    fmt.Sprintf("alert %d", i),
		RcptTo:     []string{}, From: []string{}, To: []string{},
		Attachments: []sink.Attachment{}, ParseErrors: []string{},
	}
}

func open(t *testing.T, cfg Config, outs ...forward.Forwarder) *Spool {
	t.Helper()
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 5*time.Millisecond, 20*time.Millisecond
	}
	s, err := Open(cfg, nil, outs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func handle(t *testing.T, s *Spool, a *sink.Alert) {
	t.Helper()
	if err := s.Handle(context.Background(), a); err != nil {
		t.Fatalf("Handle %s: %v", a.Subject, err)
	}
}

func drain(t *testing.T, s *Spool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		n, _ := s.Len()
		t.Fatalf("spool not drained, %d left: %v", n, err)
	}
}

// queueFiles lists the files in queue/ that hold alerts: a segment kept
// for the next ones, all of it blanks and zeros, is not counted.
func queueFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, queueDir, "*"))
	var holding []string
	for _, path := range m {
		data, err := os.ReadFile(path)
		if lines, _ := recordLines(data); err != nil || len(lines) > 0 || !strings.HasSuffix(path, segmentExt) {
			holding = append(holding, path)
		}
	}
	return holding
}

// TestDeliverInOrderPerDevice: every alert reaches every output, alerts of
// one device in arrival order, and the queue is empty afterwards.
func TestDeliverInOrderPerDevice(t *testing.T) {
	dir := t.TempDir()
	a, b := &fakeOutput{name: "a"}, &fakeOutput{name: "b"}
	// b is flaky: every third call fails; order must still hold.
	b.setFail(func(_ *sink.Alert, call int) error {
		if call%3 == 0 {
			return errDown
		}
		return nil
	})
	s := open(t, Config{Dir: dir, Lanes: 4}, a, b)
	devices := []string{"cam1", "cam2", "ups", "printer", "nas"}
	for i := 0; i < 200; i++ {
		handle(t, s, testAlert(i, devices[i%len(devices)]))
	}
	drain(t, s)
	for _, out := range []*fakeOutput{a, b} {
		got := out.delivered()
		if len(got) != 200 {
			t.Fatalf("%s got %d alerts, want 200", out.name, len(got))
		}
		last := map[string]string{}
		for _, al := range got {
			if prev := last[al.Device]; prev != "" && al.ID < prev {
				t.Fatalf("%s: %s delivered after a later alert of %s", out.name, al.Subject, al.Device)
			}
			last[al.Device] = al.ID
		}
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("queue not empty after delivery: %v", files)
	}
	if n, b := s.Len(); n != 0 || b != 0 {
		t.Errorf("Len() = %d, %d", n, b)
	}
}

// TestDurableBeforeHandleReturns: when Handle returns, the alert is in the
// queue directory even though no output has taken it.
func TestDurableBeforeHandleReturns(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir}, out)
	a := testAlert(1, "cam")
	handle(t, s, a)
	data, err := os.ReadFile(filepath.Join(dir, queueDir, a.ID+segmentExt))
	data = queueData(data)
	if err != nil || !strings.Contains(string(data), `"subject":"alert 1"`) || !strings.HasSuffix(string(data), "}\n") {
		t.Fatalf("queue file: %v %s", err, data)
	}
}

// TestRestartDeliversWhatIsLeft: alerts stored while the output was down
// are delivered by the next Open, oldest first; half-written files are
// removed and unreadable ones set aside.
func TestRestartDeliversWhatIsLeft(t *testing.T) {
	dir := t.TempDir()
	down := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s1, err := Open(Config{Dir: dir, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}, nil, down)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		handle(t, s1, testAlert(i, "ups"))
	}
	s1.Close()
	if items, _ := List(dir); len(items) != 20 {
		t.Fatalf("%d alerts listed after close, want 20", len(items))
	}
	// A crash mid-write leaves a batch without its final newline or an
	// empty one (never acknowledged: removed), or a stray temp file; bit rot
	// leaves garbage (set aside as corrupt).
	os.WriteFile(filepath.Join(dir, queueDir, "18ea0000000000000000dead.jsonl"), []byte(`{"id":"18ea0000000000000000dead"}`+"\n"+`{"id":"18ea0000000000000000dea2","subj`), 0o600)
	os.WriteFile(filepath.Join(dir, queueDir, "18ea0000000000000000f00d.jsonl"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, queueDir, ".18ea0000000000000000cafe.json.tmp"), []byte(`{"id":`), 0o600)
	os.WriteFile(filepath.Join(dir, queueDir, "18ea0000000000000000beef.jsonl"), []byte("not json\n"), 0o600)

	up := &fakeOutput{name: "mqtt"}
	s2 := open(t, Config{Dir: dir}, up)
	drain(t, s2)
	got := up.delivered()
	if len(got) != 20 {
		t.Fatalf("delivered %d after restart, want 20", len(got))
	}
	for i, a := range got {
		if a.Subject != fmt.Sprintf("alert %d", i) {
			t.Fatalf("delivery %d is %q: not in arrival order", i, a.Subject)
		}
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("queue not empty: %v", files)
	}
	items, err := List(dir)
	if err != nil || len(items) != 1 || items[0].State != "corrupt" || items[0].ID != "18ea0000000000000000beef-0" {
		t.Errorf("List after restart = %+v, %v; want the corrupt file only", items, err)
	}
}

// TestDeadLetter: an output that refuses an alert for good gets N attempts;
// then the alert is a dead letter for that output, the other output still
// has it, and it leaves the queue. Retry puts it back; Drop removes it.
func TestDeadLetter(t *testing.T) {
	dir := t.TempDir()
	good := &fakeOutput{name: "serial"}
	picky := &fakeOutput{name: "mqtt", fail: func(a *sink.Alert, _ int) error {
		if a.Subject == "alert 1" {
			return errors.New("payload too large")
		}
		return nil
	}}
	s := open(t, Config{Dir: dir, MaxAttempts: 3}, good, picky)
	handle(t, s, testAlert(1, "cam"))
	handle(t, s, testAlert(2, "cam"))
	drain(t, s)
	if len(good.delivered()) != 2 || len(picky.delivered()) != 1 {
		t.Fatalf("delivered serial %d mqtt %d", len(good.delivered()), len(picky.delivered()))
	}
	if picky.call != 4 { // 3 refusals of alert 1, then alert 2
		t.Errorf("mqtt called %d times, want 4", picky.call)
	}
	items, err := List(dir)
	if err != nil || len(items) != 1 || items[0].State != "dead" || items[0].Output != "mqtt" ||
		items[0].Reason != "payload too large" || items[0].Subject != "alert 1" {
		t.Fatalf("List = %+v, %v", items, err)
	}
	id := items[0].ID

	if err := Retry(dir, id); err != nil {
		t.Fatal(err)
	}
	if items, _ := List(dir); len(items) != 1 || items[0].State != "queued" {
		t.Fatalf("after retry: %+v", items)
	}
	picky.setFail(nil)
	if n, err := s.Rescan(); err != nil || n != 1 {
		t.Fatalf("Rescan = %d, %v", n, err)
	}
	drain(t, s)
	if len(picky.delivered()) != 2 {
		t.Errorf("retried alert not delivered to mqtt")
	}
	if err := Drop(dir, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Drop of a delivered alert: %v, want ErrNotFound", err)
	}
}

func TestDrop(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir}, &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }})
	a := testAlert(1, "cam")
	handle(t, s, a)
	s.Close()
	if err := Drop(dir, a.ID); err != nil {
		t.Fatal(err)
	}
	if items, _ := List(dir); len(items) != 0 {
		t.Errorf("still listed: %+v", items)
	}
}

// TestCaps: at its count or size cap the spool refuses with
// sink.ErrStorageFull (452), evicts nothing, and accepts again once
// alerts are delivered.
func TestCaps(t *testing.T) {
	for _, cfg := range []Config{{MaxAlerts: 5}, {MaxBytes: 5 * 300}} {
		dir := t.TempDir()
		cfg.Dir = dir
		out := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
		s := open(t, cfg, out)
		accepted := 0
		var err error
		for i := 0; i < 20 && err == nil; i++ {
			if err = s.Handle(context.Background(), testAlert(i, "cam")); err == nil {
				accepted++
			}
		}
		if !errors.Is(err, sink.ErrStorageFull) || accepted == 0 || accepted > 5 {
			t.Fatalf("%+v: accepted %d, then %v; want at most 5 then ErrStorageFull", cfg, accepted, err)
		}
		if items, _ := List(dir); len(items) != accepted {
			t.Fatalf("%d alerts listed for %d accepted", len(items), accepted)
		}
		out.setFail(nil)
		drain(t, s)
		if len(out.delivered()) != accepted {
			t.Fatalf("delivered %d of %d", len(out.delivered()), accepted)
		}
		if err := s.Handle(context.Background(), testAlert(99, "cam")); err != nil {
			t.Fatalf("after draining: %v", err)
		}
	}
}

// TestDiskFull fills a real (tiny) tmpfs: the write fails with
// sink.ErrStorageFull, nothing half-written stays, earlier alerts survive.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		testtools.Unavailable(t, "TestDiskFull mounts a tmpfs and needs root (CI runs as root)")
	}
	mount, umount := testtools.RequireTool(t, "mount"), testtools.RequireTool(t, "umount")
	dir := t.TempDir()
	if out, err := exec.Command(mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command(umount, dir).Run() })
	out := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir}, out)
	var err error
	accepted := 0
	for i := 0; i < 1000 && err == nil; i++ {
		a := testAlert(i, "cam")
		a.Text = strings.Repeat("x", 2000)
		if err = s.Handle(context.Background(), a); err == nil {
			accepted++
		}
	}
	if !errors.Is(err, sink.ErrStorageFull) {
		t.Fatalf("after %d alerts: %v, want ErrStorageFull", accepted, err)
	}
	if accepted == 0 {
		t.Fatal("nothing fitted")
	}
	s.Close()
	tmp, _ := filepath.Glob(filepath.Join(dir, queueDir, ".*"))
	if len(tmp) != 0 {
		t.Errorf("half-written files left: %v", tmp)
	}
	out2 := &fakeOutput{name: "mqtt"}
	s2 := open(t, Config{Dir: dir}, out2)
	drain(t, s2)
	if len(out2.delivered()) != accepted {
		t.Fatalf("delivered %d after restart, want the %d accepted", len(out2.delivered()), accepted)
	}
}

// TestMemoryModeWritesNothing: a memory spool given a directory (as the
// config always has one) neither creates it nor writes anything beside it,
// while alerts are queued, retried, dead-lettered and delivered.
func TestMemoryModeWritesNothing(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "spool")
	before := disktest.Tree(t, parent)
	out := &fakeOutput{name: "mqtt", fail: func(_ *sink.Alert, call int) error {
		if call <= 3 {
			return errDown // queued and retried first
		}
		return nil
	}}
	picky := &fakeOutput{name: "serial", fail: func(a *sink.Alert, _ int) error {
		if a.Subject == "alert 0" {
			return errors.New("refused for good") // a dead letter
		}
		return nil
	}}
	s := open(t, Config{Mode: ModeMemory, Dir: dir, MaxAttempts: 2}, out, picky)
	for i := 0; i < 10; i++ {
		handle(t, s, testAlert(i, "cam"))
	}
	drain(t, s)
	if len(out.delivered()) != 10 {
		t.Fatalf("delivered %d", len(out.delivered()))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := disktest.Tree(t, parent); !slices.Equal(after, before) {
		t.Errorf("memory spool wrote to disk: %v, was %v", after, before)
	}
	if got := s.Outputs(); len(got) != 2 || got[0] != "mqtt(via memory spool)" || got[1] != "serial(via memory spool)" {
		t.Errorf("Outputs() = %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {Mode: "tape", Dir: "x"}, {Dir: "x", RetryMin: time.Minute, RetryMax: time.Second}} {
		if _, err := Open(c, nil, &fakeOutput{name: "x"}); err == nil {
			t.Errorf("Open(%+v) accepted", c)
		}
	}
	if _, err := Open(Config{Mode: ModeMemory}, nil); err == nil {
		t.Error("Open without outputs accepted")
	}
}

// TestModeOff: without a queue, Handle answers with what the outputs said:
// nil only when all confirmed, temporary when one may recover, a panic is
// an error; nothing is retried and nothing stays behind.
func TestModeOff(t *testing.T) {
	ok := forward.Func{ID: "ok", F: func(context.Context, *sink.Alert) error { return nil }}
	down := forward.Func{ID: "down", F: func(context.Context, *sink.Alert) error { return errDown }}
	broken := forward.Func{ID: "broken", F: func(context.Context, *sink.Alert) error { return errors.New("refused") }}
	panics := forward.Func{ID: "panics", F: func(context.Context, *sink.Alert) error { panic("boom") }}
	tests := []struct {
		name      string
		outs      []forward.Forwarder
		wantErr   bool
		temporary bool
	}{
		{"all ok", []forward.Forwarder{ok, ok}, false, false},
		{"one down", []forward.Forwarder{ok, down}, true, true},
		{"down and broken", []forward.Forwarder{broken, down}, true, true},
		{"broken only", []forward.Forwarder{ok, broken}, true, false},
		{"panic is an error", []forward.Forwarder{ok, panics}, true, false},
	}
	for _, tt := range tests {
		s := open(t, Config{Mode: ModeOff, MaxAttempts: 1}, tt.outs...)
		for i := range 3 { // the same answer every time: nothing left over from before
			err := s.Handle(context.Background(), testAlert(i, "cam"))
			if (err != nil) != tt.wantErr || sink.Temporary(err) != tt.temporary {
				t.Errorf("%s, mail %d: err %v (temporary %v)", tt.name, i, err, sink.Temporary(err))
			}
		}
		if n, _ := s.Len(); n != 0 {
			t.Errorf("%s: %d alerts left behind", tt.name, n)
		}
		s.Close()
	}
	s := open(t, Config{Mode: ModeOff}, ok, down)
	if got := s.Outputs(); strings.Join(got, ",") != "ok,down" {
		t.Errorf("Outputs() = %q", got)
	}
}

// TestModeOffConcurrentOutputs: outputs run side by side, so a slow one
// does not add its time to the others'. Each output waits until both have
// started; one after the other, the first would wait until the deadline.
func TestModeOffConcurrentOutputs(t *testing.T) {
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
	s := open(t, Config{Mode: ModeOff}, forward.Func{ID: "a", F: barrier}, forward.Func{ID: "b", F: barrier})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Handle(ctx, testAlert(1, "cam")); err != nil {
		t.Fatalf("outputs did not run concurrently: %v", err)
	}
}

// TestModeOffTimeout: when the outputs do not answer before the handler's
// deadline, Handle says so with a temporary error (451), and an alert
// still waiting in its lane then is not delivered any more: the device
// sends it again.
func TestModeOffTimeout(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	slow := forward.Func{ID: "slow", F: func(_ context.Context, a *sink.Alert) error {
		<-release
		mu.Lock()
		got = append(got, a.Subject)
		mu.Unlock()
		return nil
	}}
	s := open(t, Config{Mode: ModeOff}, slow)
	errs := make(chan error, 2)
	for i := range 2 { // one device: the second waits behind the first in its lane
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			errs <- s.Handle(ctx, testAlert(i, "cam"))
		}()
		time.Sleep(20 * time.Millisecond)
	}
	for range 2 {
		if err := <-errs; !sink.Temporary(err) {
			t.Fatalf("outputs too slow: %v, want a temporary error", err)
		}
	}
	close(release)
	drain(t, s)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "alert 0" {
		t.Fatalf("delivered %q, want only the alert already under way", got)
	}
}

// TestSpoolFromFirstRelease: a spool the first release left behind
// (testdata/spool/v0) is listed and delivered by this one.
func TestSpoolFromFirstRelease(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../testdata/spool/v0")); err != nil {
		t.Fatal(err)
	}
	items, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, it := range items {
		states = append(states, it.State+" "+it.Device+" "+it.Subject)
	}
	want := []string{
		"queued cam-garage alert 0",
		"queued ups alert 1",
		"queued cam-garage alert 2 (put back with spool retry)",
		"dead nas alert 3 (refused by the serial output)",
	}
	if strings.Join(states, "\n") != strings.Join(want, "\n") {
		t.Fatalf("spool list of the first release's spool:\n%s\nwant:\n%s", strings.Join(states, "\n"), strings.Join(want, "\n"))
	}
	out := &fakeOutput{name: "mqtt"}
	s := open(t, Config{Dir: dir}, out)
	drain(t, s)
	var got []string
	for _, a := range out.delivered() {
		got = append(got, a.Device+" "+a.Subject+" "+a.Attachments[0].Filename)
	}
	slices.Sort(got)
	wantDelivered := []string{"cam-garage alert 0 snap.jpg", "cam-garage alert 2 (put back with spool retry) snap.jpg", "ups alert 1 snap.jpg"}
	if !slices.Equal(got, wantDelivered) {
		t.Fatalf("delivered %q, want %q", got, wantDelivered)
	}
}

// TestStats: the live picture of a disk and a memory spool; a memory
// spool keeps only its latest dead letters.
func TestStats(t *testing.T) {
	down := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	dir := t.TempDir()
	s := open(t, Config{Dir: dir}, down)
	first := testAlert(1, "cam")
	handle(t, s, first)
	handle(t, s, testAlert(2, "ups"))
	st := s.Stats()
	if st.Queued != 2 || st.Bytes <= 0 || !st.Oldest.Equal(first.ReceivedAt) || st.Dead != 0 {
		t.Fatalf("disk spool with two queued: %+v", st)
	}
	if items, _ := List(dir); StatsOf(items).Queued != 2 {
		t.Fatalf("StatsOf(List) = %+v", StatsOf(items))
	}

	refuse := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errors.New("payload too large") }}
	m := open(t, Config{Mode: ModeMemory, MaxAttempts: 1}, refuse)
	for i := range maxMemoryDead + 20 {
		handle(t, m, testAlert(i, "cam"))
	}
	drain(t, m)
	if st := m.Stats(); st.Queued != 0 || st.Dead != maxMemoryDead {
		t.Fatalf("memory spool after %d refusals: %+v, want %d dead letters kept", maxMemoryDead+20, st, maxMemoryDead)
	}
	dl := m.DeadLetters()
	if len(dl) != maxMemoryDead || dl[len(dl)-1].Alert.Subject != fmt.Sprintf("alert %d", maxMemoryDead+19) || dl[0].Alert.Subject != "alert 20" {
		t.Fatalf("kept dead letters: first %q, last %q", dl[0].Alert.Subject, dl[len(dl)-1].Alert.Subject)
	}
}

// TestControlSocket: what a memory spool holds (queued alerts and its dead
// letters) is listed through its control socket while it runs; nothing
// answers once it has stopped.
func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	release := make(chan struct{})
	out := &fakeOutput{name: "mqtt", fail: func(a *sink.Alert, _ int) error {
		if a.Device == "printer" {
			return errors.New("payload too large")
		}
		<-release
		return nil
	}}
	s := open(t, Config{Mode: ModeMemory, MaxAttempts: 1}, out)
	l, err := net.Listen("unix", filepath.Join(dir, ControlName))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeControl(l) }()

	handle(t, s, testAlert(1, "printer"))
	handle(t, s, testAlert(2, "cam"))
	// The printer's alert is refused at once and becomes a dead letter; the
	// camera's waits at its output.
	want := []string{"dead printer payload too large", "queued cam "}
	var got []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		items, err := Running(dir)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, it := range items {
			got = append(got, it.State+" "+it.Device+" "+it.Reason)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("items %q, want %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	drain(t, s)
	if items, _ := Running(dir); len(items) != 1 || items[0].State != "dead" {
		t.Fatalf("after delivery: %+v, want the dead letter only", items)
	}
	_ = l.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := Running(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after close: %v, want ErrNotRunning", err)
	}
}

// TestSpoolFromPreviousRelease: a spool the release before coalescing and
// routing rules left behind (testdata/spool/v1) is listed and delivered by
// this one, each alert to the outputs of its stored route.
func TestSpoolFromPreviousRelease(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../testdata/spool/v1")); err != nil {
		t.Fatal(err)
	}
	items, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, it := range items {
		states = append(states, it.State+" "+it.Device+" "+it.Subject)
	}
	want := []string{
		"queued cam-garage alert 0",
		"queued printer alert 1 (serial only)",
		"queued cam-garage alert 2 (put back with spool retry)",
		"dead nas alert 3 (refused by the serial output)",
	}
	if strings.Join(states, "\n") != strings.Join(want, "\n") {
		t.Fatalf("spool list of the previous release's spool:\n%s\nwant:\n%s", strings.Join(states, "\n"), strings.Join(want, "\n"))
	}
	mq, ser := &fakeOutput{name: "mqtt"}, &fakeOutput{name: "serial"}
	s := open(t, Config{Dir: dir}, mq, ser)
	drain(t, s)
	for _, tt := range []struct {
		out  *fakeOutput
		want []string
	}{
		{mq, []string{"alert 0", "alert 2 (put back with spool retry)"}},
		{ser, []string{"alert 0", "alert 1 (serial only)", "alert 2 (put back with spool retry)"}},
	} {
		var got []string
		for _, a := range tt.out.delivered() {
			got = append(got, a.Subject)
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s got %q, want %q", tt.out.name, got, tt.want)
		}
	}
}
