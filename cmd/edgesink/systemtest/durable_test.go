package systemtest

// The real binary killed with SIGKILL mid-load, told by SIGHUP to pick up
// what an operator put back, and run with its spool in memory.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/spool/disktest"
	"github.com/edgesink/edgesink/forward/spool/spooltest"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestCrashLosesNothing runs the real binary with the broker down, so that
// every acknowledged mail exists only in the spool; kills it with SIGKILL
// once mails have been acknowledged and while 20 senders are mid-load;
// restarts it on the same spool and lets the senders retry what was not
// acknowledged, as devices do. Once the broker is back, every acknowledged
// mail and every retried one must reach MQTT. The test fails if the kill
// found nothing acknowledged or nothing in flight.
func TestCrashLosesNothing(t *testing.T) {
	broker := mqtttest.StartMosquittoPersistent(t)
	stream := mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "crash-sub", nil)
	bin := binary(t)
	spoolDir := t.TempDir()
	// The load comes from one address: lift the per-address limits.
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(conf, []byte("smtp:\n  max_connections_per_ip: 100\n  max_mails_per_minute: 1000000\n"+
		"mqtt:\n  max_reconnect_interval: 1s\nspool:\n  retry_max: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", conf, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", spoolDir}

	broker.Stop() // nothing acknowledged can leave the spool before the kill
	first, addr1 := startBinary(t, bin, args...)
	var mu sync.Mutex
	addr := addr1
	current := func() string { mu.Lock(); defer mu.Unlock(); return addr }

	const total, wantAcked = 600, 50
	var progress smtptest.Progress
	loadDone := make(chan struct{})
	var acked, refused []string
	go func() {
		defer close(loadDone)
		acked, refused, _ = smtptest.SendMany(current, "crash", total, 20, &progress)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for progress.Acked.Load() < wantAcked {
		if time.Now().After(deadline) {
			t.Fatalf("only %d mails acknowledged within 30s; the kill would prove nothing", progress.Acked.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Senders about to begin a mail wait (in current) for the restart, so
	// that what the kill refuses is what was in flight.
	mu.Lock()
	inFlight := progress.Started.Load() - progress.Ended.Load()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ackedAtKill := progress.Acked.Load()
	_ = first.Wait()
	if inFlight == 0 || progress.Started.Load() >= total {
		mu.Unlock()
		t.Fatalf("no mail was in flight at the kill (%d begun, %d ended)", progress.Started.Load(), progress.Ended.Load())
	}
	second, addr2 := startBinary(t, bin, args...)
	addr = addr2
	mu.Unlock()
	<-loadDone

	// The devices retry what got no 250.
	var stillRefused []string
	var errs []error
	for _, s := range refused {
		if err := smtptest.SendMail(context.Background(), nil, current(), "loadgen", "cam0@cams.lan", "a@b", smtptest.SubjectMail(s)); err != nil {
			stillRefused = append(stillRefused, s)
			errs = append(errs, err)
		}
	}
	if len(stillRefused) > 0 {
		t.Fatalf("%d retries refused after restart: %v", len(stillRefused), errs[0])
	}
	if len(refused) == 0 {
		t.Fatalf("the kill with %d mails in flight refused none of them", inFlight)
	}

	broker.Restart()
	mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "crash-sub", stream)
	seen := stream.AwaitSubjects(t, append(append([]string(nil), acked...), refused...), 60*time.Second)
	t.Logf("crash: %d acknowledged before the kill, %d in flight at it; %d acknowledged in all, %d unacknowledged and retried, %d delivered, %d duplicates",
		ackedAtKill, inFlight, len(acked), len(refused), len(seen), mqtttest.Duplicates(seen))

	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if items, err := spool.List(spoolDir); err != nil || len(items) != 0 {
		t.Errorf("spool after clean stop: %d items, %v", len(items), err)
	}
}

// TestRetryPickedUpOnSIGHUP: a dead letter put back with 'edgesink spool
// retry' is delivered by the running daemon on SIGHUP (systemctl reload).
func TestRetryPickedUpOnSIGHUP(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	dir := t.TempDir()
	a := spooltest.DeadLetter(t, dir, "retry me")

	cmd, _ := startBinary(t, binary(t), "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", dir)
	if code, out, errOut := runBinary(t, "spool", "--spool-dir", dir, "retry", a.ID); code != 0 {
		t.Fatalf("retry: %d %s %s", code, out, errOut)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	msg := sub.Next(t, 10*time.Second, nil)
	var got sink.Alert
	if err := json.Unmarshal([]byte(msg.Payload), &got); err != nil || got.ID != a.ID || got.Subject != "retry me" {
		t.Fatalf("delivered %v: %s", err, msg.Payload)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		items, _ := spool.List(dir)
		if len(items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %+v", items)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMemorySpoolWritesNothing runs the real binary with spool.mode:
// memory and HOME and the state directory in a fresh tree: accepting and
// delivering alerts creates, changes and writes nothing there, the spool
// directory is never created, and the kernel counts no bytes the process
// sent to a block device while it did so (/proc/PID/io write_bytes).
func TestMemorySpoolWritesNothing(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	root := t.TempDir()
	home, state := filepath.Join(root, "home"), filepath.Join(root, "state")
	for _, d := range []string{home, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	spoolDir := filepath.Join(state, "edgesink", "spool")
	conf := filepath.Join(t.TempDir(), "edgesink.yaml") // outside the watched tree
	if err := os.WriteFile(conf, []byte("spool:\n  mode: memory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr := startBinaryEnv(t, binary(t), []string{"HOME=" + home, "XDG_STATE_HOME=" + state},
		"--config", conf, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", spoolDir)
	pid := cmd.Process.Pid

	before, written := disktest.Tree(t, root), writeBytes(t, pid)
	var subjects []string
	for i := 0; i < 20; i++ {
		s := fmt.Sprintf("memory-%d", i)
		if err := smtptest.SendMail(context.Background(), nil, addr, "x", "cam@cams.lan", "a@b", smtptest.SubjectMail(s)); err != nil {
			t.Fatalf("mail %d: %v", i, err)
		}
		subjects = append(subjects, s)
	}
	sub.AwaitSubjects(t, subjects, 30*time.Second)

	if w := writeBytes(t, pid); w != written {
		t.Errorf("the process wrote %d bytes to disk while handling 20 alerts", w-written)
	}
	if after := disktest.Tree(t, root); !slices.Equal(after, before) {
		t.Errorf("files changed under HOME or the state directory:\nbefore %v\nafter  %v", before, after)
	}
	// At start the instance lock (a PID, not fsynced) and the control
	// sockets 'spool list' and 'devices' ask go into spool.dir when one is
	// given; nothing else may be there (no device registry: RAM only).
	entries, err := os.ReadDir(spoolDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err != nil || !slices.Equal(names, []string{spool.ControlName, hass.ControlName, spool.LockName}) {
		t.Errorf("memory spool's directory %s holds %q (%v), want only the instance lock and the control sockets", spoolDir, names, err)
	}
}

// writeBytes is what the kernel counts a process as having sent to the
// storage layer (/proc/PID/io write_bytes, charged when pages are dirtied).
func writeBytes(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/io (a kernel with task I/O accounting): %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no write_bytes in /proc/%d/io", pid)
	return 0
}

// TestIdleWritesNothing: with every stage in (disk spool, coalescing and
// auto-stop, Home Assistant with its registry, snapshots and hub figures,
// the status page), an edgesink whose mail is all delivered writes nothing
// more: no file under its state directory changes and the kernel charges
// it no bytes written, so an idle board leaves its SD card alone.
func TestIdleWritesNothing(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	root := t.TempDir()
	conf := filepath.Join(t.TempDir(), "edgesink.yaml") // outside the watched tree
	yaml := "coalesce:\n  window: 300ms\n  auto_stop:\n    motion: 600ms\n" +
		"homeassistant:\n  stats_interval: 200ms\n  off_delay: 1s\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr := startBinary(t, binary(t), "--config", conf, "--smtp-listen", "127.0.0.1:0",
		"--mqtt-broker", broker.URL(), "--spool-dir", root)
	pid := cmd.Process.Pid

	// A motion start (stopped by auto-stop), a storm's follow-up, a UPS.
	for i, m := range []struct{ from, file string }{
		{"cam-garage@cams.lan", "hikvision-motion.eml"},
		{"cam-garage@cams.lan", "hikvision-motion.eml"},
		{"ups@rack.lan", "apc-ups-onbattery.eml"},
	} {
		if err := smtptest.SendMail(context.Background(), nil, addr, "x", m.from, "a@b", corpusMail(t, m.file)); err != nil {
			t.Fatalf("mail %d: %v", i, err)
		}
	}
	sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return strings.Contains(m.Payload, `"synthetic":true`) })
	time.Sleep(1500 * time.Millisecond) // the stop's removal, the off_delay, the hub's figures settle

	before, written := disktest.Tree(t, root), writeBytes(t, pid)
	time.Sleep(3 * time.Second)
	if w := writeBytes(t, pid); w != written {
		t.Errorf("idle, the process wrote %d bytes to disk in 3 s", w-written)
	}
	if after := disktest.Tree(t, root); !slices.Equal(after, before) {
		t.Errorf("idle, files changed in the state directory:\nbefore %v\nafter  %v", before, after)
	}
}
