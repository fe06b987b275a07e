package spool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/spool/disktest"
	"github.com/edgesink/edgesink/sink"
)

// These tests run the spool on a disk that forgets, at a power cut, all
// that was not fsynced (disktest). They fail if any fsync on the way to a
// promise is dropped: the queue file's, the queue directory's, the
// parents' of the directories made at first start, a dead letter's.

// syncBuffer is a log sink safe for the spool's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

// TestPowerCutKeepsQueue: alerts Handle acknowledged on a first start (the
// spool directories did not exist) are all delivered after a power cut.
func TestPowerCutKeepsQueue(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "var", "lib", "edgesink")
	down := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir}, down)
	var wg sync.WaitGroup
	for d := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				handle(t, s, testAlert(d*100+i, "cam"+string(rune('a'+d))))
			}
		}()
	}
	wg.Wait()
	s.Close()
	disk.CutAndMount(t)

	if got := deliverAll(t, dir); got != 100 {
		t.Fatalf("after the power cut %d of 100 acknowledged alerts were delivered", got)
	}
}

// deliverAll opens the spool in dir with an output that takes everything,
// and returns how many alerts it delivered.
func deliverAll(t *testing.T, dir string) int {
	t.Helper()
	out := &fakeOutput{name: "mqtt"}
	s := open(t, Config{Dir: dir}, out)
	drain(t, s)
	return len(out.delivered())
}

// TestPowerCutKeepsDeadLetters: dead letters, and alerts put back with
// Retry, survive a power cut.
func TestPowerCutKeepsDeadLetters(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "spool")
	refuse := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errors.New("payload too large") }}
	s := open(t, Config{Dir: dir, MaxAttempts: 1}, refuse)
	for i := range 10 {
		handle(t, s, testAlert(i, "cam"))
	}
	drain(t, s)
	s.Close()
	disk.CutAndMount(t)

	items, err := List(dir)
	if err != nil || len(items) != 10 {
		t.Fatalf("after the power cut the spool holds %d items (%v), want 10 dead letters", len(items), err)
	}
	for _, it := range items {
		if it.State != "dead" {
			t.Fatalf("%s is %s, want dead", it.ID, it.State)
		}
		if err := Retry(dir, it.ID); err != nil {
			t.Fatal(err)
		}
	}
	disk.CutAndMount(t)
	items, err = List(dir)
	if err != nil || len(items) != 10 {
		t.Fatalf("after retry and a power cut the spool holds %d items (%v), want 10 queued", len(items), err)
	}
	for _, it := range items {
		if it.State != "queued" {
			t.Fatalf("after retry and a power cut %s is %s, want queued", it.ID, it.State)
		}
	}
	items, err = List(dir)
	if err != nil || len(items) != 10 {
		t.Fatalf("after retry and a power cut the spool holds %d items (%v), want 10 queued", len(items), err)
	}
	for _, it := range items {
		if it.State != "queued" {
			t.Fatalf("after retry and a power cut %s is %s, want queued", it.ID, it.State)
		}
	}

	if got := deliverAll(t, dir); got != 10 {
		t.Fatalf("after retry and a power cut %d of 10 alerts were delivered", got)
	}
}

// TestDeadLetterWriteFails: while the dead letter cannot be written the
// alert stays queued, the failure is logged and tried again; once the disk
// heals, the dead letter is there and the queue empty.
func TestDeadLetterWriteFails(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "spool")
	release := make(chan struct{})
	refuse := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error {
		<-release
		return errors.New("payload too large")
	}}
	var logs syncBuffer
	s, err := Open(Config{Dir: dir, MaxAttempts: 1, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, nil)), refuse)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	handle(t, s, testAlert(1, "cam"))

	disk.Fail(syscall.EIO)
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for logs.count("cannot write dead letter") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no retried dead-letter failure in the log:\n%s", logs.b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, _ := s.Len(); n != 1 {
		t.Fatalf("while the dead letter cannot be written the spool holds %d alerts, want 1", n)
	}
	disk.Fail(0)
	drain(t, s)
	items, err := List(dir)
	if err != nil || len(items) != 1 || items[0].State != "dead" {
		t.Fatalf("after the disk healed: %+v %v, want one dead letter", items, err)
	}
}

// TestReadOnlySpool: a spool that cannot be written answers
// sink.ErrStorageFailed (451 4.3.0), not "outputs unavailable".
func TestReadOnlySpool(t *testing.T) {
	disk, mnt := disktest.Start(t)
	s := open(t, Config{Dir: filepath.Join(mnt, "spool")}, &fakeOutput{name: "mqtt"})
	disk.Fail(syscall.EROFS)
	err := s.Handle(context.Background(), testAlert(1, "cam"))
	if !errors.Is(err, sink.ErrStorageFailed) || !errors.Is(err, syscall.EROFS) || !sink.Temporary(err) {
		t.Fatalf("Handle on a read-only spool: %v, want a temporary ErrStorageFailed", err)
	}
	if n, _ := s.Len(); n != 0 {
		t.Fatalf("a refused alert is still counted: %d", n)
	}
	disk.Fail(0)
	handle(t, s, testAlert(2, "cam"))
}

// TestHangingDisk: a write whose fsync hangs longer than the handler's
// deadline fails in time (the device is told 451 and sends again), and so
// does every other mail of its batch; when the fsync completes late, the
// batch is removed, so the resent mails are not second copies.
func TestHangingDisk(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "spool")
	out := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir}, out)
	handle(t, s, testAlert(0, "cam")) // before the disk hangs: stays

	disk.Stall()
	errs := make(chan error, 3)
	for i := 1; i <= 3; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			errs <- s.Handle(ctx, testAlert(i, "cam"))
		}()
	}
	for range 3 {
		err := <-errs
		if !errors.Is(err, sink.ErrStorageFailed) || !sink.Temporary(err) {
			t.Fatalf("Handle on a hanging disk: %v, want a temporary ErrStorageFailed", err)
		}
	}
	disk.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if items, err := List(dir); err == nil && len(items) == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after the late fsync the spool holds %+v (%v), want only the alert from before", items, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, _ := s.Len(); n != 1 {
		t.Fatalf("the spool counts %d alerts, want 1", n)
	}
	handle(t, s, testAlert(4, "cam")) // the disk is well again
	s.Close()
	disk.CutAndMount(t)
	items, err := List(dir)
	if err != nil || len(items) != 2 || items[0].Subject != "alert 0" || items[1].Subject != "alert 4" {
		t.Fatalf("after a power cut: %+v %v, want alerts 0 and 4", items, err)
	}
}

// TestPowerCutKeepsFoldedAlerts: alerts folded into an open coalescing
// window were acknowledged like any other; after a power cut the replay
// still accounts for every one of them.
func TestPowerCutKeepsFoldedAlerts(t *testing.T) {
	disk, mnt := disktest.Start(t)
	dir := filepath.Join(mnt, "spool")
	down := &fakeOutput{name: "mqtt", fail: func(*sink.Alert, int) error { return errDown }}
	s := open(t, Config{Dir: dir, Coalesce: CoalesceConfig{Window: time.Hour}}, down)
	for i := range 50 {
		handle(t, s, motion(i, "1", "start"))
	}
	s.Close()
	disk.CutAndMount(t)

	out := &fakeOutput{name: "mqtt"}
	s = open(t, Config{Dir: dir, Coalesce: CoalesceConfig{Window: time.Hour}}, out)
	drain(t, s)
	if ids, sum := accounted(out.delivered()); len(ids) != 50 || sum != 50 {
		t.Fatalf("after the power cut: counts %d over %d ids, want 50: %v", sum, len(ids), summary(out.delivered()))
	}
}
