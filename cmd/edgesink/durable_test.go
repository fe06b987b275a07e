package main

// Durability tests with real faults: a stopped or flapping mosquitto, a
// serial device that vanishes, edgesink killed with SIGKILL mid-load, a full
// spool. Every mail that got a 250 must reach MQTT; duplicates are counted
// (QoS 1 and crash recovery allow them) and reported.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/serial/serialtest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
)

func numberedMail(subject string) []byte {
	return []byte("From: cam@cams.lan\r\nTo: alerts@edgesink.lan\r\nSubject: " + subject + "\r\n\r\nalert body\r\n")
}

// sendMany sends n mails numbered prefix-0 … over conc connections at
// once and returns the subjects that got 250 and those that did not.
func sendMany(addr func() string, prefix string, n, conc int) (acked, refused []string, errs []error) {
	return sendManyCounting(addr, prefix, n, conc, nil)
}

// loadProgress counts, while sendManyCounting runs, the mails begun, those
// ended (answered or failed) and those that got 250.
type loadProgress struct {
	started, ended, acked atomic.Int64
}

// sendManyCounting is sendMany that keeps p up to date, when given.
func sendManyCounting(addr func() string, prefix string, n, conc int, p *loadProgress) (acked, refused []string, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range next {
				subject := fmt.Sprintf("%s-%d", prefix, i)
				from := fmt.Sprintf("cam%d@cams.lan", g%5)
				if p != nil {
					p.started.Add(1)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := sendMail(ctx, addr(), "loadgen", from, []string{"alerts@edgesink.lan"}, numberedMail(subject))
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, subject)
				} else {
					refused = append(refused, subject)
					errs = append(errs, err)
				}
				mu.Unlock()
				if p != nil {
					if err == nil {
						p.acked.Add(1)
					}
					p.ended.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	return acked, refused, errs
}

// awaitSubjects reads MQTT messages until every wanted subject was seen,
// and returns how often each subject arrived.
func awaitSubjects(t *testing.T, sub *mqtttest.Subscriber, want []string, timeout time.Duration) map[string]int {
	t.Helper()
	seen := map[string]int{}
	missing := map[string]bool{}
	for _, s := range want {
		missing[s] = true
	}
	deadline := time.After(timeout)
	for len(missing) > 0 {
		select {
		case m := <-sub.C():
			var a sink.Alert
			if err := json.Unmarshal([]byte(m.Payload), &a); err != nil {
				continue
			}
			seen[a.Subject]++
			delete(missing, a.Subject)
		case <-deadline:
			var some []string
			for s := range missing {
				some = append(some, s)
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
		case m := <-sub.C():
			var a sink.Alert
			if json.Unmarshal([]byte(m.Payload), &a) == nil {
				seen[a.Subject]++
			}
		case <-time.After(500 * time.Millisecond):
			return seen
		}
	}
}

func duplicates(seen map[string]int) int {
	d := 0
	for _, n := range seen {
		d += n - 1
	}
	return d
}

// TestBrokerOutageLosesNothing: with mosquitto stopped, 200 mails all get
// 250; once it is back, all 200 arrive.
func TestBrokerOutageLosesNothing(t *testing.T) {
	broker := mqtttest.StartMosquittoPersistent(t)
	stream := mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "outage-sub", nil)
	cfg := testConfig(t, broker.URL(), "")
	cfg.MQTT.MaxReconnect = time.Second
	es := startEdgesink(t, cfg)

	broker.Stop()
	acked, refused, errs := sendMany(func() string { return es.SMTPAddr }, "outage", 200, 10)
	if len(refused) > 0 {
		t.Fatalf("%d of 200 mails refused during the outage: %v", len(refused), errs[0])
	}
	broker.Restart()
	mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "outage-sub", stream)
	seen := awaitSubjects(t, stream, acked, 60*time.Second)
	t.Logf("broker outage: %d mails acknowledged, %d delivered, %d duplicates", len(acked), len(seen), duplicates(seen))
}

// TestBrokerFlapping: the broker stops and starts three times while mails
// keep coming; every acknowledged mail arrives.
func TestBrokerFlapping(t *testing.T) {
	broker := mqtttest.StartMosquittoPersistent(t)
	stream := mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "flap-sub", nil)
	cfg := testConfig(t, broker.URL(), "")
	cfg.MQTT.MaxReconnect = 500 * time.Millisecond
	es := startEdgesink(t, cfg)

	done := make(chan struct{})
	var acked []string
	var refused []string
	go func() {
		defer close(done)
		acked, refused, _ = sendMany(func() string { return es.SMTPAddr }, "flap", 400, 8)
	}()
	for i := 0; i < 3; i++ {
		time.Sleep(150 * time.Millisecond)
		broker.Stop()
		time.Sleep(300 * time.Millisecond)
		broker.Restart()
		mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "flap-sub", stream)
	}
	<-done
	if len(refused) > 0 {
		t.Fatalf("%d mails refused while the broker flapped", len(refused))
	}
	seen := awaitSubjects(t, stream, acked, 60*time.Second)
	t.Logf("broker flapping: %d acknowledged, %d delivered, %d duplicates", len(acked), len(seen), duplicates(seen))
}

// TestSerialVanishes: alerts accepted while the serial device is unplugged
// are written, in order, once it is back.
func TestSerialVanishes(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	pty := serialtest.StartPty(t)
	cfg := testConfig(t, broker.URL(), pty.Dev)
	cfg.Serial.Template = "{subject}"
	es := startEdgesink(t, cfg)
	if err := sendMail(context.Background(), es.SMTPAddr, "x", "ups@rack.lan", []string{"a@b"}, numberedMail("before")); err != nil {
		t.Fatal(err)
	}
	if l := pty.NextLine(t, 10*time.Second); l != "before\r\n" {
		t.Fatalf("line %q", l)
	}
	pty.Unplug()
	for i := 0; i < 20; i++ {
		if err := sendMail(context.Background(), es.SMTPAddr, "x", "ups@rack.lan", []string{"a@b"}, numberedMail(fmt.Sprintf("gone-%d", i))); err != nil {
			t.Fatalf("mail %d while unplugged: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	pty.Plug()
	for i := 0; i < 20; i++ {
		if l := pty.NextLine(t, 20*time.Second); l != fmt.Sprintf("gone-%d\r\n", i) {
			t.Fatalf("line %d after replug: %q", i, l)
		}
	}
}

// TestSpoolFullAnswers452: at its cap the spool refuses new mail with 452
// (the device retries later) and keeps what it holds.
func TestSpoolFullAnswers452(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	cfg := testConfig(t, broker.URL(), "")
	cfg.Spool.MaxAlerts = 5
	cfg.SMTP.ShutdownGrace = 500 * time.Millisecond // the broker stays down: nothing to drain
	es := startEdgesink(t, cfg)
	broker.Stop()
	time.Sleep(200 * time.Millisecond)
	var got452 error
	accepted := 0
	for i := 0; i < 10 && got452 == nil; i++ {
		err := sendMail(context.Background(), es.SMTPAddr, "x", "cam@cams.lan", []string{"a@b"}, numberedMail(fmt.Sprint(i)))
		switch {
		case err == nil:
			accepted++
		case strings.Contains(err.Error(), "452"):
			got452 = err
		default:
			t.Fatalf("mail %d: %v", i, err)
		}
	}
	if got452 == nil || accepted != 5 {
		t.Fatalf("accepted %d, then %v; want 5 then 452", accepted, got452)
	}
	items, err := spool.List(cfg.Spool.Dir)
	if err != nil || len(items) != 5 {
		t.Fatalf("spool holds %d alerts (%v), want 5", len(items), err)
	}
}

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
	bin := buildBinary(t)
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
	var progress loadProgress
	loadDone := make(chan struct{})
	var acked, refused []string
	go func() {
		defer close(loadDone)
		acked, refused, _ = sendManyCounting(current, "crash", total, 20, &progress)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for progress.acked.Load() < wantAcked {
		if time.Now().After(deadline) {
			t.Fatalf("only %d mails acknowledged within 30s; the kill would prove nothing", progress.acked.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Senders about to begin a mail wait (in current) for the restart, so
	// that what the kill refuses is what was in flight.
	mu.Lock()
	inFlight := progress.started.Load() - progress.ended.Load()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ackedAtKill := progress.acked.Load()
	_ = first.Wait()
	if inFlight == 0 || progress.started.Load() >= total {
		mu.Unlock()
		t.Fatalf("no mail was in flight at the kill (%d begun, %d ended)", progress.started.Load(), progress.ended.Load())
	}
	second, addr2 := startBinary(t, bin, args...)
	addr = addr2
	mu.Unlock()
	<-loadDone

	// The devices retry what got no 250.
	var stillRefused []string
	var errs []error
	for _, s := range refused {
		if err := sendMail(context.Background(), current(), "loadgen", "cam0@cams.lan", []string{"a@b"}, numberedMail(s)); err != nil {
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
	seen := awaitSubjects(t, stream, append(append([]string(nil), acked...), refused...), 60*time.Second)
	t.Logf("crash: %d acknowledged before the kill, %d in flight at it; %d acknowledged in all, %d unacknowledged and retried, %d delivered, %d duplicates",
		ackedAtKill, inFlight, len(acked), len(refused), len(seen), duplicates(seen))

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

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgesink")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs edgesink and returns once it logged its SMTP address.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return startBinaryEnv(t, bin, nil, args...)
}

// startBinaryEnv is startBinary with extra environment variables.
func startBinaryEnv(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		readyRE := regexp.MustCompile(`msg="edgesink ready".* smtp=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
	}()
	select {
	case addr := <-ready:
		return cmd, addr
	case <-time.After(20 * time.Second):
		t.Fatal("edgesink not ready within 20s")
		return nil, ""
	}
}

// deadLetterSpool leaves in dir what an earlier run leaves when its MQTT
// output refused an alert for good: one dead letter. It returns the alert.
func deadLetterSpool(t *testing.T, dir, subject string) *sink.Alert {
	t.Helper()
	refuse := forward.Func{ID: "mqtt", F: func(context.Context, *sink.Alert) error { return errors.New("payload too large") }}
	sp, err := spool.Open(spool.Config{Dir: dir, MaxAttempts: 1, RetryMin: time.Millisecond, RetryMax: time.Millisecond}, nil, refuse)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	a := &sink.Alert{ID: sink.NewID(time.Now()), ReceivedAt: time.Now().UTC(), Device: "cam", Subject: subject,
		RcptTo: []string{}, From: []string{}, To: []string{}, Attachments: []sink.Attachment{}, ParseErrors: []string{}}
	if err := sp.Handle(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sp.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSpoolCommand drives 'edgesink spool' over a spool with a dead letter.
func TestSpoolCommand(t *testing.T) {
	dir := t.TempDir()
	a := deadLetterSpool(t, dir, "Motion")

	code, out, _ := runCLI("spool", "--spool-dir", dir, "list")
	if code != exitOK || !strings.Contains(out, a.ID) || !strings.Contains(out, "dead") || !strings.Contains(out, "payload too large") ||
		!strings.Contains(out, ": 0 queued, 1 dead letter\n") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = runCLI("spool", "--spool-dir", dir, "show", a.ID)
	if code != exitOK || !strings.Contains(out, "output mqtt gave up: payload too large") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	if code, out, _ = runCLI("spool", "--spool-dir", dir, "retry", a.ID); code != exitOK || !strings.Contains(out, "queued again") {
		t.Fatalf("retry: %d\n%s", code, out)
	}
	if _, out, _ = runCLI("spool", "--spool-dir", dir, "list"); !strings.Contains(out, "queued") {
		t.Fatalf("after retry: %s", out)
	}
	if code, _, _ = runCLI("spool", "--spool-dir", dir, "drop", a.ID); code != exitOK {
		t.Fatalf("drop: %d", code)
	}
	if _, out, _ = runCLI("spool", "--spool-dir", dir, "list"); !strings.Contains(out, "is empty") {
		t.Fatalf("after drop: %s", out)
	}
	if code, _, errOut := runCLI("spool", "--spool-dir", dir, "show", "nope"); code != exitUsage || !strings.Contains(errOut, "no such alert") {
		t.Errorf("show unknown: %d %s", code, errOut)
	}
	if code, _, _ := runCLI("spool", "--spool-dir", dir, "list", "extra"); code != exitUsage {
		t.Errorf("list with argument: %d", code)
	}
}

// TestRetryPickedUpOnSIGHUP: a dead letter put back with 'edgesink spool
// retry' is delivered by the running daemon on SIGHUP (systemctl reload).
func TestRetryPickedUpOnSIGHUP(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	dir := t.TempDir()
	a := deadLetterSpool(t, dir, "retry me")

	cmd, _ := startBinary(t, buildBinary(t), "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", dir)
	if code, out, errOut := runCLI("spool", "--spool-dir", dir, "retry", a.ID); code != exitOK {
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
	cmd, addr := startBinaryEnv(t, buildBinary(t), []string{"HOME=" + home, "XDG_STATE_HOME=" + state},
		"--config", conf, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", spoolDir)
	pid := cmd.Process.Pid

	before, written := treeOf(t, root), writeBytes(t, pid)
	var subjects []string
	for i := 0; i < 20; i++ {
		s := fmt.Sprintf("memory-%d", i)
		if err := sendMail(context.Background(), addr, "x", "cam@cams.lan", []string{"a@b"}, numberedMail(s)); err != nil {
			t.Fatalf("mail %d: %v", i, err)
		}
		subjects = append(subjects, s)
	}
	awaitSubjects(t, sub, subjects, 30*time.Second)

	if w := writeBytes(t, pid); w != written {
		t.Errorf("the process wrote %d bytes to disk while handling 20 alerts", w-written)
	}
	if after := treeOf(t, root); !slices.Equal(after, before) {
		t.Errorf("files changed under HOME or the state directory:\nbefore %v\nafter  %v", before, after)
	}
	// At start the instance lock (a PID, not fsynced) and the control
	// socket 'spool list' asks go into spool.dir when one is given; nothing
	// else may be there.
	entries, err := os.ReadDir(spoolDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err != nil || !slices.Equal(names, []string{spool.ControlName, spool.LockName}) {
		t.Errorf("memory spool's directory %s holds %q (%v), want only the instance lock and the control socket", spoolDir, names, err)
	}
}

// treeOf lists every path under root with its mode, size and time of
// last change.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v %d %s", path, fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
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
