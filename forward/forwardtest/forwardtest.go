// Package forwardtest starts the real peers that edgesink's tests talk to: a
// mosquitto broker on a free loopback port, a mosquitto_sub subscriber, and
// socat pseudo-terminal pairs standing in for serial devices.
//
// Tools are looked up on PATH and in /usr/sbin and /sbin. A missing tool
// skips the test on a developer machine (naming the Debian package; make
// test installs it) and fails it when CI is set to anything: CI never
// passes by skipping.
package forwardtest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sbinDirs are searched after PATH: mosquitto, sfdisk, debugfs and mkfs.*
// live there, and a normal user's PATH often lacks them.
var sbinDirs = []string{"/usr/sbin", "/sbin"}

// debianPackage names the package that installs a tool, for the message a
// missing tool gives (.ci/test-deps installs the same list).
var debianPackage = map[string]string{
	"mosquitto": "mosquitto", "mosquitto_passwd": "mosquitto",
	"mosquitto_sub": "mosquitto-clients", "mosquitto_pub": "mosquitto-clients",
	"socat": "socat", "swaks": "swaks",
	"qemu-arm-static": "qemu-user-static", "qemu-aarch64-static": "qemu-user-static",
	"qemu-arm": "qemu-user-static", "qemu-aarch64": "qemu-user-static",
	"dpkg": "dpkg", "dpkg-deb": "dpkg",
	"systemd-sysusers": "systemd", "systemd-analyze": "systemd",
	"sfdisk": "fdisk", "mkfs.vfat": "dosfstools", "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs",
	"xz": "xz-utils", "file": "file", "make": "make", "mount": "mount", "umount": "mount",
}

// LookTool finds an external program on PATH, else in /usr/sbin or /sbin.
func LookTool(name string) (string, error) {
	return lookTool(name, sbinDirs)
}

func lookTool(name string, extra []string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range extra {
		p := filepath.Join(dir, name)
		if fi, statErr := os.Stat(p); statErr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// RequireTool returns the path of an external program the test needs. See
// RequireOneOf for what happens when it is missing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	return RequireOneOf(t, name)
}

// RequireOneOf returns the path of the first of names found (one tool
// under its names on different Debian releases). If none is found, the
// test fails under CI (CI set to anything) and is skipped otherwise; the
// message names the Debian package to install.
func RequireOneOf(t testing.TB, names ...string) string {
	t.Helper()
	return requireOneOf(t, sbinDirs, names...)
}

func requireOneOf(t testing.TB, extra []string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := lookTool(name, extra); err == nil {
			return p
		}
	}
	pkg := debianPackage[names[0]]
	if pkg == "" {
		pkg = names[0]
	}
	Unavailable(t, "%s not found on PATH, /usr/sbin or /sbin (Debian package %s: make test installs it, or apt-get install %s)",
		strings.Join(names, " or "), pkg, pkg)
	return ""
}

// Unavailable ends a test that cannot run here: under CI (the CI variable
// set to anything non-empty) it fails, since CI must run every test; on a
// developer's machine it skips with the reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI=%s: "+format, append([]any{os.Getenv("CI")}, args...)...)
	}
	t.Skipf(format, args...)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Mosquitto is a mosquitto broker owned by one test.
type Mosquitto struct {
	t    testing.TB
	bin  string
	conf string
	Port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
}

// StartMosquitto starts a broker on a free loopback port that accepts any
// client, and stops it when the test ends.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	return StartMosquittoWith(t, "allow_anonymous true\nset_tcp_nodelay true\n")
}

// StartMosquittoPersistent starts a broker that keeps sessions and queued
// messages across a Stop and Restart, as a production broker does, so that a
// subscriber with a persistent session misses nothing during an outage.
func StartMosquittoPersistent(t testing.TB) *Mosquitto {
	t.Helper()
	dir := t.TempDir()
	return startMosquitto(t, "persistence true\npersistence_location "+dir+"/\nautosave_interval 0\n",
		"allow_anonymous true\nset_tcp_nodelay true\n")
}

// StartMosquittoWith is StartMosquitto with extra configuration lines for
// the listener (TLS files, password_file, allow_anonymous, ...).
func StartMosquittoWith(t testing.TB, listenerConf string) *Mosquitto {
	t.Helper()
	return startMosquitto(t, "persistence false\n", listenerConf)
}

func startMosquitto(t testing.TB, globalConf, listenerConf string) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: RequireTool(t, "mosquitto")}
	dir := t.TempDir()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		m.Port = FreePort(t)
		m.conf = filepath.Join(dir, "mosquitto.conf")
		conf := fmt.Sprintf("per_listener_settings true\n%smax_queued_messages 100000\nlistener %d 127.0.0.1\n%s", globalConf, m.Port, listenerConf)
		if os.Geteuid() == 0 {
			// Run as root stays root, instead of dropping to a "mosquitto"
			// user that cannot read the test's private temp files.
			conf = "user root\n" + conf
		}
		if err = os.WriteFile(m.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if err = m.start(); err == nil {
			t.Cleanup(m.Stop)
			return m
		}
	}
	t.Fatalf("mosquitto did not start: %v", err)
	return nil
}

// URL is the broker's address for a client, tcp://127.0.0.1:PORT.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Addr is 127.0.0.1:PORT.
func (m *Mosquitto) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

func (m *Mosquitto) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.bin, "-c", m.conf)
	m.log = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("mosquitto exited: %s", m.log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", m.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			m.cmd, m.exited = cmd, exited
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("mosquitto not listening on %s after 10s", m.Addr())
}

// Stop stops the broker (a broker outage, as the test sees it).
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// Restart starts a stopped broker again on the same port.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatal(err)
	}
}

// Message is one MQTT message as a subscriber saw it.
type Message struct {
	Topic   string
	Payload string
}

// Subscriber is a mosquitto_sub process subscribed to a topic filter.
type Subscriber struct {
	msgs chan Message
}

// Subscribe runs mosquitto_sub against the broker at addr (host:port) on
// filter and returns once it is certainly subscribed (a probe went round).
func Subscribe(t testing.TB, addr string, filter string) *Subscriber {
	t.Helper()
	return subscribe(t, addr, filter, "", nil)
}

// SubscribeSession is Subscribe with a persistent session under clientID:
// messages published while the subscriber (or the broker) was away are
// delivered when it subscribes again with the same id. Messages go to into,
// when given, so one stream can span several subscriber processes.
func SubscribeSession(t testing.TB, addr, filter, clientID string, into *Subscriber) *Subscriber {
	t.Helper()
	return subscribe(t, addr, filter, clientID, into)
}

func subscribe(t testing.TB, addr, filter, clientID string, into *Subscriber) *Subscriber {
	t.Helper()
	sub := RequireTool(t, "mosquitto_sub")
	pub := RequireTool(t, "mosquitto_pub")
	probe := "forwardtest/probe/" + randomHex(6)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-h", host, "-p", port, "-q", "1", "-t", filter, "-t", probe, "-F", "%t\t%p"}
	if clientID != "" {
		args = append(args, "-i", clientID, "-c")
	}
	cmd := exec.Command(sub, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	s := into
	if s == nil {
		s = &Subscriber{msgs: make(chan Message, 100000)}
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		once := sync.Once{}
		for sc.Scan() {
			topic, payload, _ := strings.Cut(sc.Text(), "\t")
			if topic == probe {
				once.Do(func() { close(ready) })
				continue
			}
			s.msgs <- Message{Topic: topic, Payload: payload}
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		_ = exec.Command(pub, "-h", host, "-p", port, "-t", probe, "-m", "probe").Run()
		select {
		case <-ready:
			return s
		case <-deadline:
			t.Fatal("mosquitto_sub did not subscribe within 10s")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Next returns the next message on a topic for which keep returns true
// (nil keeps all), failing the test after timeout.
func (s *Subscriber) Next(t testing.TB, timeout time.Duration, keep func(Message) bool) Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.msgs:
			if keep == nil || keep(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no MQTT message within %s", timeout)
			return Message{}
		}
	}
}

// C exposes the message stream for tests that count.
func (s *Subscriber) C() <-chan Message { return s.msgs }

// Pty is a socat pseudo-terminal pair: edgesink opens Dev, the test reads
// what arrives on the other end.
type Pty struct {
	t     testing.TB
	bin   string
	Dev   string
	peer  string
	lines chan string

	mu       sync.Mutex
	cmd      *exec.Cmd
	peerFile *os.File
}

// StartPty creates the pair and starts reading lines from the peer end.
func StartPty(t testing.TB) *Pty {
	t.Helper()
	dir := t.TempDir()
	p := &Pty{t: t, bin: RequireTool(t, "socat"), Dev: filepath.Join(dir, "ttyEDGE"),
		peer: filepath.Join(dir, "ttyPEER"), lines: make(chan string, 10000)}
	p.Plug()
	t.Cleanup(p.Unplug)
	return p
}

// Plug (re)creates the pair at the same paths, like a USB adapter that is
// plugged back in.
func (p *Pty) Plug() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, "pty,raw,echo=0,link="+p.Dev, "pty,raw,echo=0,link="+p.peer)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := os.Stat(p.Dev)
		_, e2 := os.Stat(p.peer)
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			p.t.Fatal("socat did not create the pty links within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.OpenFile(p.peer, os.O_RDONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		_ = cmd.Process.Kill()
		p.t.Fatal(err)
	}
	p.cmd, p.peerFile = cmd, f
	go func() {
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
}

// Unplug kills socat: both ends vanish, as when a USB adapter is pulled.
func (p *Pty) Unplug() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	_ = p.peerFile.Close()
	_ = os.Remove(p.Dev)
	_ = os.Remove(p.peer)
	p.cmd, p.peerFile = nil, nil
}

// NextLine returns the next line (with its line ending) the device received.
func (p *Pty) NextLine(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case l := <-p.lines:
		return l
	case <-time.After(timeout):
		t.Fatalf("no serial line within %s", timeout)
		return ""
	}
}

// Lines exposes the stream of received lines.
func (p *Pty) Lines() <-chan string { return p.lines }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
