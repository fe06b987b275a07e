// Package mqtttest starts the real MQTT peers the tests of edgesink's MQTT
// output talk to: a mosquitto broker on a free loopback port, and
// mosquitto_sub subscribers, which also wait for alerts by subject and count
// duplicates. A missing tool is handled as testtools says.
package mqtttest

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
)

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
	return StartMosquittoConfig(t, func(port int) string {
		return fmt.Sprintf("per_listener_settings true\n%smax_queued_messages 100000\nlistener %d 127.0.0.1\n%s", globalConf, port, listenerConf)
	})
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
	Payload string // the raw bytes (binary-safe only with SubscribeWith)
	// Retained is set only by SubscribeWith: the broker sent the message
	// from its retained store (at subscription).
	Retained bool
}

// Login is a broker login for SubscribeWith and Publish; zero for none.
type Login struct{ User, Password string }

func (l Login) args() []string {
	if l.User == "" {
		return nil
	}
	return []string{"-u", l.User, "-P", l.Password}
}

// SubscribeWith is Subscribe with a login, binary-safe payloads and the
// retained flag of each message.
func SubscribeWith(t testing.TB, addr, filter string, login Login) *Subscriber {
	t.Helper()
	return subscribeFull(t, addr, filter, "", nil, login, true)
}

// Publish publishes payload on topic with mosquitto_pub (QoS 1); an empty
// payload is sent as a zero-length message (with retain, it clears the
// topic, as Home Assistant deletes a device).
func Publish(t testing.TB, addr, topic, payload string, retain bool, login Login) {
	t.Helper()
	pub := testtools.RequireTool(t, "mosquitto_pub")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-h", host, "-p", port, "-q", "1", "-t", topic}, login.args()...)
	if retain {
		args = append(args, "-r")
	}
	if payload == "" {
		args = append(args, "-n")
	} else {
		args = append(args, "-m", payload)
	}
	if out, err := exec.Command(pub, args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v: %s", args, err, out)
	}
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
	return subscribeFull(t, addr, filter, clientID, into, Login{}, false)
}

func subscribeFull(t testing.TB, addr, filter, clientID string, into *Subscriber, login Login, raw bool) *Subscriber {
	t.Helper()
	sub := testtools.RequireTool(t, "mosquitto_sub")
	pub := testtools.RequireTool(t, "mosquitto_pub")
	probe := "mqtttest/probe/" + randomHex(6)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	format := "%t\t%p"
	if raw {
		format = "%t\t%r\t%x"
	}
	args := append([]string{"-h", host, "-p", port, "-q", "1", "-t", filter, "-t", probe, "-F", format}, login.args()...)
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
			m := Message{Topic: topic, Payload: payload}
			if raw {
				flag, hexed, _ := strings.Cut(payload, "\t")
				data, _ := hex.DecodeString(hexed)
				m.Payload, m.Retained = string(data), flag == "1"
			}
			s.msgs <- m
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		_ = exec.Command(pub, append([]string{"-h", host, "-p", port, "-t", probe, "-m", "probe"}, login.args()...)...).Run()
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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
