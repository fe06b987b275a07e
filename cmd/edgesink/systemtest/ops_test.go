package systemtest

// The binary as an installed board runs it: two instances on one board,
// and 'spool retry' for the service user (issue 9, sections 3 and 4).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/spool/spooltest"
)

// embeddedArgs run the binary on free loopback ports with its embedded
// broker, so no outside broker is needed.
func embeddedArgs(spoolDir string) []string {
	return []string{"--smtp-listen", "127.0.0.1:0", "--config", writeTestConfig(spoolDir), "--spool-dir", spoolDir}
}

// writeTestConfig writes, next to spoolDir, a config whose embedded broker
// listens on a free port.
func writeTestConfig(spoolDir string) string {
	path := filepath.Join(filepath.Dir(spoolDir), "edgesink-"+filepath.Base(spoolDir)+".yaml")
	_ = os.WriteFile(path, []byte("mqtt:\n  broker: embedded\n  embedded_listen: 127.0.0.1:0\n"), 0o644)
	return path
}

// TestSecondInstanceRefused starts the real binary twice on one spool: the
// second exits non-zero at once, names the first's PID, and has not touched
// the spool (a crash-cut batch file, which opening the spool removes, is
// still there), bound a port or started a broker.
func TestSecondInstanceRefused(t *testing.T) {
	bin := binary(t)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	first, _ := startBinary(t, bin, embeddedArgs(spoolDir)...)

	partial := filepath.Join(spoolDir, "queue", "0000000000000000000000ff.jsonl")
	if err := os.WriteFile(partial, []byte(`{"id":"0000000000000000000000ff"`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bin, embeddedArgs(spoolDir)...)
	out, err := second.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("second instance still running after 15s, did not refuse:\n%s", out)
	}
	if err == nil || second.ProcessState.ExitCode() == 0 {
		t.Fatalf("second instance exited 0:\n%s", out)
	}
	if want := "pid " + strconv.Itoa(first.Process.Pid); !strings.Contains(string(out), want) {
		t.Errorf("second instance's message does not name the first (%s):\n%s", want, out)
	}
	for _, touched := range []string{"spool ready", "embedded MQTT broker listening", "removed alert cut short", "edgesink ready"} {
		if strings.Contains(string(out), touched) {
			t.Errorf("second instance got as far as %q before refusing:\n%s", touched, out)
		}
	}
	if _, err := os.Stat(partial); err != nil {
		t.Errorf("second instance opened the spool (the partial batch is gone): %v", err)
	}
	if pid, err := spool.Holder(spoolDir); err != nil || pid != first.Process.Pid {
		t.Errorf("lock holder = %d, %v; want the first instance, %d", pid, err, first.Process.Pid)
	}
}

// throwawayUser creates a system user for the test and removes it after.
func throwawayUser(t *testing.T) (name string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs this test as root: it creates a user and runs edgesink as that user")
		}
		t.Skip("needs root (to create a throwaway user); CI runs it as root")
	}
	useradd, userdel := testtools.RequireTool(t, "useradd"), testtools.RequireTool(t, "userdel")
	name = fmt.Sprintf("es-t%d", os.Getpid())
	if out, err := exec.Command(useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(userdel, name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return name, uid, gid
}

// service is the real binary running as a service would, its log kept.
type service struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

func (s *service) logText() string { s.mu.Lock(); defer s.mu.Unlock(); return s.log.String() }

// waitLog waits until the log holds want, and fails the test after timeout.
func (s *service) waitLog(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.logText(), want) {
		select {
		case <-s.done:
			t.Fatalf("edgesink exited while waiting for %q:\n%s", want, s.logText())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v:\n%s", want, timeout, s.logText())
		}
	}
}

// startService starts bin with args as cred (nil: as this process) and
// returns once it is ready; it is stopped with SIGTERM when the test ends.
func startService(t *testing.T, cred *syscall.Credential, bin string, args ...string) *service {
	t.Helper()
	s := &service{cmd: exec.Command(bin, withHTTPListen(args)...), done: make(chan struct{})}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	pipe, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			t.Errorf("edgesink did not stop on SIGTERM:\n%s", s.logText())
		}
	})
	s.waitLog(t, `msg="edgesink ready"`, 20*time.Second)
	return s
}

// queueFileAsRoot writes an alert into the queue as the old 'sudo edgesink
// spool retry' did: owned by root, mode 0600, unreadable for the service.
func queueFileAsRoot(t *testing.T, spoolDir, subject string) string {
	t.Helper()
	a := spooltest.Alert(subject)
	data, _ := json.Marshal(a)
	if err := os.WriteFile(filepath.Join(spoolDir, "queue", a.ID+".json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// waitGone waits until the spool no longer holds id (delivered).
func waitGone(t *testing.T, s *service, spoolDir, id string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		items, err := spool.Show(spoolDir, id)
		if errors.Is(err, spool.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in the spool (%+v, %v):\n%s", id, items, err, s.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ownedBy(t *testing.T, path string, uid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode().Perm()&0o400 == 0 {
		t.Errorf("%s: owner uid %d mode %v, want uid %d and readable by it", path, st.Uid, fi.Mode(), uid)
	}
}

// TestSpoolRetryForServiceUser: the service runs as a user the test
// creates, as the package runs it as edgesink. 'spool retry' run as root
// (sudo) and as that user writes files the service can read, tells the
// running service (SIGHUP to the PID in the lock file) or says none runs;
// a root-owned queue file the service cannot read is moved aside, at start
// and on rescan, never fatal, and 'spool retry' brings it back.
func TestSpoolRetryForServiceUser(t *testing.T) {
	name, uid, gid := throwawayUser(t)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	base, err := os.MkdirTemp("", "edgesink-ops-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	// The binary sits in a directory open to all, as base is.
	bin := binary(t)
	state := filepath.Join(base, "state") // as /var/lib/edgesink: the service user's, 0750
	spoolDir := filepath.Join(state, "spool")
	deadA := spooltest.DeadLetter(t, spoolDir, "retried by root")
	deadB := spooltest.DeadLetter(t, spoolDir, "retried by the user")
	chownR(t, state, uid, gid)
	os.Chmod(state, 0o750)
	conf := filepath.Join(base, "edgesink.yaml")
	os.WriteFile(conf, []byte("mqtt:\n  embedded_listen: 127.0.0.1:0\n"), 0o644)
	cli := func(cred *syscall.Credential, args ...string) (int, string) {
		cmd := exec.Command(bin, append(args, "--spool-dir", spoolDir)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}

	// No service yet: the files land with the service user's owner.
	if code, out := cli(nil, "spool", "retry", deadA.ID); code != 0 || !strings.Contains(out, "no edgesink is running") {
		t.Fatalf("retry as root: exit %d\n%s", code, out)
	}
	ownedBy(t, filepath.Join(spoolDir, "queue", deadA.ID+".json"), uid)
	if code, out := cli(cred, "spool", "retry", deadB.ID); code != 0 || !strings.Contains(out, "no edgesink is running") {
		t.Fatalf("retry as %s: exit %d\n%s", name, code, out)
	}
	ownedBy(t, filepath.Join(spoolDir, "queue", deadB.ID+".json"), uid)
	// What the old CLI left: a file the service cannot read.
	atStart := queueFileAsRoot(t, spoolDir, "unreadable at start")

	svc := startService(t, cred, bin, "--config", conf, "--smtp-listen", "127.0.0.1:0", "--spool-dir", spoolDir)
	svc.waitLog(t, "moved aside", 10*time.Second)
	waitGone(t, svc, spoolDir, deadA.ID)
	waitGone(t, svc, spoolDir, deadB.ID)
	ownedBy(t, filepath.Join(spoolDir, spool.LockName), uid)
	if items, err := spool.Show(spoolDir, atStart); err != nil || items[0].State != "held" {
		t.Fatalf("unreadable file: %+v, %v; want it held", items, err)
	}
	code, out := cli(nil, "spool", "retry", atStart)
	if want := fmt.Sprintf("told the running edgesink (pid %d)", svc.cmd.Process.Pid); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("retry of a held alert: exit %d\n%s\nwant %q", code, out, want)
	}
	waitGone(t, svc, spoolDir, atStart)

	// The same on a rescan (SIGHUP) while running.
	onRescan := queueFileAsRoot(t, spoolDir, "unreadable on rescan")
	if err := svc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	svc.waitLog(t, onRescan+".json", 10*time.Second)
	if code, out := cli(cred, "spool", "list"); code != 0 || !strings.Contains(out, "held") {
		t.Errorf("spool list as %s: exit %d\n%s", name, code, out)
	}
	if code, out := cli(nil, "spool", "retry", onRescan); code != 0 || !strings.Contains(out, "told the running edgesink") {
		t.Fatalf("retry after rescan: exit %d\n%s", code, out)
	}
	waitGone(t, svc, spoolDir, onRescan)
	select {
	case <-svc.done:
		t.Fatalf("the service exited:\n%s", svc.logText())
	default:
	}
}

func chownR(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTwoSitesOneBroker: two edgesinks on one host and one broker, with two
// sites, keep their own client ids (neither knocks the other off), alert
// topics and status topics: when one stops, its retained "offline" leaves
// the other's "online" standing.
func TestTwoSitesOneBroker(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	bin := binary(t)
	dir := t.TempDir()
	start := func(site string) *service {
		conf := filepath.Join(dir, site+".yaml")
		os.WriteFile(conf, []byte(fmt.Sprintf("site: %s\nsmtp:\n  listen: 127.0.0.1:0\nmqtt:\n  broker: %s\nspool:\n  dir: %s\n",
			site, broker.URL(), filepath.Join(dir, site))), 0o600)
		s := startService(t, nil, bin, "--config", conf)
		s.waitLog(t, `msg="mqtt connected"`, 10*time.Second)
		return s
	}
	a := start("a")
	b := start("b")

	status := func(sub *mqtttest.Subscriber) map[string]string {
		got := map[string]string{}
		for len(got) < 2 {
			m := sub.Next(t, 10*time.Second, nil)
			got[m.Topic] = m.Payload
		}
		return got
	}
	want := map[string]string{"edgesink/a/status": "online", "edgesink/b/status": "online"}
	if got := status(mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/status")); !reflect.DeepEqual(got, want) {
		t.Fatalf("status topics %v, want %v", got, want)
	}
	alerts := mqtttest.Subscribe(t, broker.Addr(), "edgesink/#")
	addrA := regexp.MustCompile(`msg="edgesink ready".* smtp=(\S+)`).FindStringSubmatch(a.logText())
	if out, err := exec.Command(bin, "send-test", "--server", addrA[1], "--from", "cam1@cams.lan").CombinedOutput(); err != nil {
		t.Fatalf("send-test: %v %s", err, out)
	}
	if m := alerts.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return strings.HasSuffix(m.Topic, "/alert") }); m.Topic != "edgesink/a/cam1/alert" {
		t.Errorf("alert of site a on %q, want edgesink/a/cam1/alert", m.Topic)
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	<-b.done
	want["edgesink/b/status"] = "offline"
	if got := status(mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/status")); !reflect.DeepEqual(got, want) {
		t.Errorf("after the second stopped: status topics %v, want %v", got, want)
	}
	if strings.Contains(a.logText(), "mqtt connection lost") {
		t.Errorf("the first instance was knocked off the broker (same client id?):\n%s", a.logText())
	}
}

// TestSecondInstanceSamePorts: a second edgesink with a spool of its own
// but the first's SMTP port and broker fails on the port, naming the first
// as its holder, before it connects to the broker: the first is not knocked
// off (same client id) and its retained "online" stands.
func TestSecondInstanceSamePorts(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	bin := binary(t)
	dir := t.TempDir()
	first := startService(t, nil, bin, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", filepath.Join(dir, "first"))
	first.waitLog(t, `msg="mqtt connected"`, 10*time.Second)
	m := regexp.MustCompile(`msg="edgesink ready".* smtp=(\S+)`).FindStringSubmatch(first.logText())
	if m == nil {
		t.Fatalf("no SMTP address in the log:\n%s", first.logText())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bin, "--smtp-listen", m[1], "--mqtt-broker", broker.URL(), "--spool-dir", filepath.Join(dir, "second"), "--http-listen", "none")
	out, err := second.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("second instance on a taken port: %v\n%s", err, out)
	}
	for _, want := range []string{"address already in use", "pid " + strconv.Itoa(first.cmd.Process.Pid) + " (edgesink", "another edgesink"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second instance's message lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "mqtt connected") || strings.Contains(string(out), "mosquitto") {
		t.Errorf("second instance connected to the broker, or blamed mosquitto:\n%s", out)
	}
	msg := mqtttest.Subscribe(t, broker.Addr(), "edgesink/status").Next(t, 10*time.Second, nil)
	if msg.Payload != "online" {
		t.Errorf("retained status %q after the second instance gave up, want online", msg.Payload)
	}
	if strings.Contains(first.logText(), "mqtt connection lost") {
		t.Errorf("the first instance was knocked off the broker:\n%s", first.logText())
	}
}
