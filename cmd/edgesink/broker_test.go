package main

// The embedded broker's logins and topic rights, with mosquitto_sub and
// mosquitto_pub as the clients (issue 11).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/broker"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// Passwords of the users brokerConfig configures.
const (
	haPass     = "ha-secret"
	readerPass = "nodered-secret"
)

// brokerConfig is testConfig with the embedded broker on a free loopback
// port, a homeassistant user "ha" and a reader "nodered". The delays
// before refusing a login are recorded in *waits instead of slept.
func brokerConfig(t *testing.T) (Config, *recordedWaits) {
	t.Helper()
	cfg := testConfig(t, brokerEmbedded, "")
	cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
	cfg.MQTT.Embedded.Users = map[string]broker.User{
		"ha":      {Password: hashFor(t, haPass), Role: broker.RoleHomeAssistant},
		"nodered": {Password: hashFor(t, readerPass), Role: broker.RoleReader},
	}
	w := &recordedWaits{}
	cfg.MQTT.Embedded.Sleep = w.sleep
	return cfg, w
}

func hashFor(t *testing.T, pass string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

type recordedWaits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *recordedWaits) sleep(_ context.Context, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = append(w.d, d)
}

func (w *recordedWaits) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// mqttLogin is how a client logs in: user "" for none; args are further
// mosquitto options (TLS, will, client id, -V).
type mqttLogin struct {
	addr       string
	user, pass string
	args       []string
}

func (l mqttLogin) base(t *testing.T) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(l.addr)
	if err != nil {
		t.Fatal(err)
	}
	a := []string{"-h", host, "-p", port}
	if l.user != "" {
		a = append(a, "-u", l.user, "-P", l.pass)
	}
	return append(a, l.args...)
}

// pub runs mosquitto_pub at QoS 1 and returns its exit status and output.
func (l mqttLogin) pub(t *testing.T, args ...string) (ok bool, out string) {
	t.Helper()
	bin := testtools.RequireTool(t, "mosquitto_pub")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, append(append(l.base(t), "-q", "1"), args...)...).CombinedOutput()
	return err == nil, string(b)
}

// mustPub publishes and fails the test if mosquitto_pub fails.
func (l mqttLogin) mustPub(t *testing.T, args ...string) {
	t.Helper()
	if ok, out := l.pub(t, args...); !ok {
		t.Fatalf("mosquitto_pub %s %v: %s", l.user, args, out)
	}
}

// mqttSub is a running mosquitto_sub.
type mqttSub struct {
	granted []string // "Subscribed" lines' granted QoS, one per filter
	msgs    chan [2]string
	ended   chan string // its output when it exits before subscribing
}

// sub runs mosquitto_sub on filters and returns once the broker answered
// the subscription (granted QoS 128 = refused), or once it exited.
func (l mqttLogin) sub(t *testing.T, filters ...string) *mqttSub {
	t.Helper()
	bin := testtools.RequireTool(t, "mosquitto_sub")
	args := append(l.base(t), "-d", "-q", "1", "-F", "MSG\t%t\t%p")
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	// Line-buffered: mosquitto_sub flushes its output after a message, not
	// after the debug line that reports the SUBACK.
	stdbuf := testtools.RequireTool(t, "stdbuf")
	cmd := exec.Command(stdbuf, append([]string{"-oL", bin}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s := &mqttSub{msgs: make(chan [2]string, 1000), ended: make(chan string, 1)}
	subscribed := make(chan []string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			all.WriteString(line + "\n")
			if m, ok := strings.CutPrefix(line, "MSG\t"); ok {
				topic, payload, _ := strings.Cut(m, "\t")
				s.msgs <- [2]string{topic, payload}
				continue
			}
			if _, q, ok := strings.Cut(line, "Subscribed (mid: "); ok {
				_, codes, _ := strings.Cut(q, "): ")
				subscribed <- strings.Split(codes, ", ")
			}
		}
		s.ended <- all.String()
	}()
	select {
	case s.granted = <-subscribed:
	case o := <-s.ended:
		s.ended <- o
	case <-time.After(15 * time.Second):
		t.Fatal("mosquitto_sub: no SUBACK within 15s")
	}
	return s
}

// refused tells whether the broker refused the connection.
func (s *mqttSub) refused() (bool, string) {
	select {
	case o := <-s.ended:
		s.ended <- o
		return s.granted == nil && strings.Contains(o, "Connection Refused"), o
	default:
		return false, ""
	}
}

// next is the next message, failing after 15s.
func (s *mqttSub) next(t *testing.T) (topic, payload string) {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m[0], m[1]
	case <-time.After(15 * time.Second):
		t.Fatal("no MQTT message within 15s")
	}
	return "", ""
}

// publisher is edgesink's own output's login, read from the instance
// directory as the broker's owner could: the tests use it to leave
// retained messages only edgesink may publish.
func publisher(t *testing.T, cfg Config, addr string) mqttLogin {
	t.Helper()
	pass, err := os.ReadFile(filepath.Join(cfg.Spool.Dir, brokerCredentialName))
	if err != nil {
		t.Fatal(err)
	}
	return mqttLogin{addr: addr, user: broker.PublisherUser, pass: strings.TrimSpace(string(pass)), args: []string{"-i", "test-as-publisher"}}
}

// waitOutputUp waits until edgesink's /metrics says its MQTT output is
// connected.
func waitOutputUp(t *testing.T, es *edgesink) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + es.HTTPAddr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `edgesink_output_up{output="mqtt"} 1`) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgesink's MQTT output not connected within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendAlert mails an alert from device cam with subject.
func sendAlert(t *testing.T, es *edgesink, subject string) {
	t.Helper()
	if err := smtptest.SendMail(context.Background(), nil, es.SMTPAddr, "x", "cam@cams.lan", "a@b", smtptest.SubjectMail(subject)); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerLogins: without a login, with a wrong password or an unknown
// user, the broker refuses the connection, each refusal waiting longer;
// the output's credential is in the instance directory, 0600.
func TestBrokerLogins(t *testing.T) {
	cfg, waits := brokerConfig(t)
	es := startEdgesink(t, cfg)
	addr := es.BrokerAddr
	// edgesink's own output logs in from the same address, and a good
	// login clears the address's record: it must be in before the
	// failures are counted.
	waitOutputUp(t, es)
	for _, l := range []mqttLogin{
		{addr: addr},
		{addr: addr, user: "nodered", pass: "wrong"},
		{addr: addr, user: "ha", pass: readerPass},
		{addr: addr, user: "nobody", pass: readerPass},
		{addr: addr, user: broker.PublisherUser, pass: "guess"},
	} {
		if ok, out := l.pub(t, "-t", "edgesink/cam/alert", "-m", "forged"); ok || !strings.Contains(out, "Connection Refused") {
			t.Errorf("login %q/%q: mosquitto_pub ok=%v, want the connection refused:\n%s", l.user, l.pass, ok, out)
		}
	}
	got := waits.get()
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second}
	if !slicesEqual(got, want) {
		t.Errorf("waits before refusing: %v, want %v (growing with each failure from the address)", got, want)
	}
	// A good login clears the address's record.
	mqttLogin{addr: addr, user: "ha", pass: haPass}.mustPub(t, "-t", "homeassistant/status", "-m", "online")
	mqttLogin{addr: addr, user: "ha", pass: "wrong"}.pub(t, "-t", "homeassistant/status", "-m", "online")
	if got := waits.get(); got[len(got)-1] != time.Second {
		t.Errorf("after a good login the next failure waits %v, want 1s", got[len(got)-1])
	}
	fi, err := os.Stat(filepath.Join(cfg.Spool.Dir, brokerCredentialName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("output's broker credential: %v %v, want a 0600 file in the instance directory", fi, err)
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBrokerReader: a reader gets alerts, but cannot publish on edgesink's
// topics, clear a retained message, subscribe beyond edgesink's topics,
// leave a will on them or take the output's client id.
func TestBrokerReader(t *testing.T) {
	cfg, _ := brokerConfig(t)
	cfg.HomeAssistant.Enabled = false // its config for edgesink_cam would race the one this test retains
	es := startEdgesink(t, cfg)
	addr := es.BrokerAddr
	reader := mqttLogin{addr: addr, user: "nodered", pass: readerPass}

	alerts := reader.sub(t, "edgesink/+/alert")
	if alerts.granted == nil || alerts.granted[0] == "128" {
		t.Fatalf("reader's subscription to edgesink/+/alert refused: %v", alerts.granted)
	}
	// Forged: refused, so the first thing the subscriber sees is the real
	// alert mailed afterwards.
	reader.pub(t, "-t", "edgesink/cam/alert", "-m", "forged")
	reader.pub(t, "-V", "mqttv5", "-t", "edgesink/cam/alert", "-m", "forged")
	sendAlert(t, es, "real-alert")
	if topic, payload := alerts.next(t); topic != "edgesink/cam/alert" || !strings.Contains(payload, "real-alert") {
		t.Fatalf("reader got %s %q, want the real alert (and never the forged one)", topic, payload)
	}

	// Retained: the status edgesink keeps, and a discovery config.
	pub := publisher(t, cfg, addr)
	const config = "homeassistant/device/edgesink_cam/config"
	pub.mustPub(t, "-r", "-t", config, "-m", `{"name":"cam"}`)
	reader.pub(t, "-r", "-n", "-t", "edgesink/status")
	reader.pub(t, "-r", "-n", "-t", config)
	reader.pub(t, "-r", "-t", config, "-m", `{"name":"forged"}`)
	check := reader.sub(t, "edgesink/status", config)
	got := map[string]string{}
	for range 2 {
		topic, payload := check.next(t)
		got[topic] = payload
	}
	if got["edgesink/status"] != "online" || got[config] != `{"name":"cam"}` {
		t.Errorf("retained after a reader tried to clear or replace them: %q, want status online and the config", got)
	}

	for _, f := range []string{"#", "+/status", "$SYS/#", "other/topic", "+/+/+/config"} {
		if s := reader.sub(t, "edgesink/status", f); s.granted == nil || len(s.granted) != 2 || s.granted[1] != "128" {
			t.Errorf("reader subscribing to %q: granted %v, want refused (128)", f, s.granted)
		}
	}

	will := mqttLogin{addr: addr, user: "nodered", pass: readerPass,
		args: []string{"--will-topic", "edgesink/status", "--will-payload", "offline", "--will-retain"}}
	if refused, out := will.sub(t, "edgesink/+/alert").refused(); !refused {
		t.Errorf("a reader with a will on the status topic was let in:\n%s", out)
	}
	thief := mqttLogin{addr: addr, user: "nodered", pass: readerPass, args: []string{"-i", cfg.MQTT.ClientID}}
	if refused, out := thief.sub(t, "edgesink/+/alert").refused(); !refused {
		t.Errorf("a reader taking the output's client id %s was let in:\n%s", cfg.MQTT.ClientID, out)
	}
	sendAlert(t, es, "still-connected")
	if _, payload := alerts.next(t); !strings.Contains(payload, "still-connected") {
		t.Errorf("after the client id attempt: %q, want the next alert", payload)
	}
}

// TestBrokerHomeAssistant: the homeassistant role's birth message and a
// device deletion (an empty retained config) are accepted; a non-empty
// config, or anything on edgesink's own topics, is not.
func TestBrokerHomeAssistant(t *testing.T) {
	cfg, _ := brokerConfig(t)
	cfg.HomeAssistant.Enabled = false // the rights alone, without edgesink's own discovery messages
	es := startEdgesink(t, cfg)
	addr := es.BrokerAddr
	ha := mqttLogin{addr: addr, user: "ha", pass: haPass}
	const config = "homeassistant/device/edgesink_cam/config"
	publisher(t, cfg, addr).mustPub(t, "-r", "-t", config, "-m", `{"name":"cam"}`)

	watch := ha.sub(t, "homeassistant/#", "edgesink/+/alert")
	if topic, payload := watch.next(t); topic != config || payload != `{"name":"cam"}` {
		t.Fatalf("homeassistant user got %s %q, want the retained config", topic, payload)
	}
	ha.pub(t, "-r", "-t", config, "-m", `{"name":"forged"}`)
	ha.pub(t, "-V", "mqttv5", "-r", "-t", config, "-m", `{"name":"forged"}`)
	ha.pub(t, "-q", "0", "-r", "-t", config, "-m", `{"name":"forged"}`)
	ha.pub(t, "-t", "edgesink/cam/alert", "-m", "forged")
	ha.mustPub(t, "-t", "homeassistant/status", "-m", "online")
	if topic, payload := watch.next(t); topic != "homeassistant/status" || payload != "online" {
		t.Fatalf("got %s %q, want Home Assistant's birth message (and no forged config or alert)", topic, payload)
	}
	ha.mustPub(t, "-r", "-n", "-t", config)
	if topic, payload := watch.next(t); topic != config || payload != "" {
		t.Fatalf("got %s %q, want the device deleted (empty config)", topic, payload)
	}
	// Gone for good: a new subscriber gets only the status.
	s := ha.sub(t, "homeassistant/device/#", "edgesink/status")
	if topic, _ := s.next(t); topic != "edgesink/status" {
		t.Errorf("after the deletion a new subscriber got %s", topic)
	}
	select {
	case m := <-s.msgs:
		t.Errorf("after the deletion a new subscriber also got %v", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestBrokerRightsFollowTopics: with a site and an alert topic outside
// {base}, the rights follow: the reader may read the configured alert
// topic and edgesink/<site>/..., not edgesink/# or other sites' topics,
// and still publishes nothing there.
func TestBrokerRightsFollowTopics(t *testing.T) {
	cfg, _ := brokerConfig(t)
	cfg.Site = "lab"
	cfg.MQTT.Topic = "cams/{device}/alarm"
	es := startEdgesink(t, cfg)
	reader := mqttLogin{addr: es.BrokerAddr, user: "nodered", pass: readerPass}
	for filter, want := range map[string]bool{
		"cams/+/alarm": true, "cams/cam/alarm": true, "edgesink/lab/#": true, "edgesink/lab/status": true,
		"edgesink/#": false, "edgesink/+/alert": false, "edgesink/other/#": false, "cams/#": false, "cams/cam/other": false,
	} {
		s := reader.sub(t, filter)
		if got := s.granted != nil && s.granted[0] != "128"; got != want {
			t.Errorf("reader subscribing to %s: granted %v, want allowed=%v", filter, s.granted, want)
		}
	}
	alerts := reader.sub(t, "cams/+/alarm")
	reader.pub(t, "-t", "cams/cam/alarm", "-m", "forged")
	sendAlert(t, es, "lab-alert")
	if topic, payload := alerts.next(t); topic != "cams/cam/alarm" || !strings.Contains(payload, "lab-alert") {
		t.Errorf("reader got %s %q, want the alert on the configured topic and never the forged one", topic, payload)
	}
}

// syncBuffer collects a log written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveLogged runs serve with its log in buf until the test ends (or
// stop), and returns where it listens, or serve's error if it stopped
// before being ready.
func serveLogged(t *testing.T, cfg Config, buf *syncBuffer) (readyInfo, func(), error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan readyInfo, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, func(r readyInfo) { ready <- r }) }()
	stop := func() { cancel(); <-done }
	select {
	case r := <-ready:
		var once sync.Once
		t.Cleanup(func() { once.Do(stop) })
		return r, func() { once.Do(stop) }, nil
	case err := <-done:
		cancel()
		return readyInfo{}, nil, err
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("edgesink not ready after 20s")
	}
	return readyInfo{}, nil, nil
}

// TestBrokerOpenOnLAN: a new configuration with the broker beyond loopback
// and no users refuses to start (and check-config says why); an upgraded
// board, where the release before broker logins ran, keeps running an
// open broker with a warning at every start and in check-config;
// embedded_allow_anonymous: true runs it without one.
func TestBrokerOpenOnLAN(t *testing.T) {
	open := func(t *testing.T) (Config, string) {
		cfg := testConfig(t, brokerEmbedded, "")
		cfg.MQTT.EmbeddedListen = "0.0.0.0:0"
		conf := filepath.Join(t.TempDir(), "edgesink.yaml")
		if err := os.WriteFile(conf, []byte("mqtt:\n  embedded_listen: 0.0.0.0:1883\nspool:\n  dir: "+cfg.Spool.Dir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg, conf
	}
	noHost := host{getenv: func(string) string { return "" }}

	t.Run("new", func(t *testing.T) {
		cfg, conf := open(t)
		var buf syncBuffer
		_, _, err := serveLogged(t, cfg, &buf)
		var ce *configError
		if !errors.As(err, &ce) || !errors.Is(err, broker.ErrOpenOnLAN) || !strings.Contains(err.Error(), "mqtt.embedded_users") {
			t.Fatalf("serve: %v, want a config error naming mqtt.embedded_users", err)
		}
		var stdout, stderr strings.Builder
		if code := runCheckConfig([]string{conf}, &stdout, &stderr, noHost); code != exitUsage ||
			!strings.Contains(stderr.String(), "mqtt.embedded_allow_anonymous: true") {
			t.Errorf("check-config: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
	})

	t.Run("upgraded", func(t *testing.T) {
		cfg, conf := open(t)
		// What the release before broker logins leaves: the instance lock,
		// and no broker credential.
		if err := os.WriteFile(filepath.Join(cfg.Spool.Dir, spool.LockName), []byte("4242\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr strings.Builder
		if code := runCheckConfig([]string{conf}, &stdout, &stderr, noHost); code != exitOK || !strings.Contains(stdout.String(), "WARNING: the embedded MQTT broker accepts every client") {
			t.Errorf("check-config before the first start: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
		for start := 1; start <= 2; start++ {
			var buf syncBuffer
			info, stop, err := serveLogged(t, cfg, &buf)
			if err != nil {
				t.Fatalf("start %d: %v", start, err)
			}
			if !strings.Contains(buf.String(), "accepts every client on the network (an upgraded configuration") {
				t.Errorf("start %d: no warning in the log:\n%s", start, buf.String())
			}
			_, port, _ := net.SplitHostPort(info.BrokerAddr)
			s := mqttLogin{addr: "127.0.0.1:" + port}.sub(t, "edgesink/status")
			if topic, payload := s.next(t); topic != "edgesink/status" || payload != "online" {
				t.Errorf("start %d: anonymous subscriber got %s %q", start, topic, payload)
			}
			stop()
		}
		stdout.Reset()
		stderr.Reset()
		if code := runCheckConfig([]string{conf}, &stdout, &stderr, noHost); code != exitOK || !strings.Contains(stdout.String(), "WARNING: the embedded MQTT broker accepts every client") {
			t.Errorf("check-config after starts: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
	})

	t.Run("allowed", func(t *testing.T) {
		cfg, _ := open(t)
		cfg.MQTT.Embedded.AllowAnonymous = true
		var buf syncBuffer
		if _, _, err := serveLogged(t, cfg, &buf); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(buf.String(), "accepts every client") {
			t.Errorf("warned although embedded_allow_anonymous is set:\n%s", buf.String())
		}
	})
}

// TestBrokerTLS: a TLS client connects to the broker's TLS listener,
// trusting the self-signed certificate whose fingerprint edgesink logged,
// and gets alerts as its user.
func TestBrokerTLS(t *testing.T) {
	cfg, _ := brokerConfig(t)
	cfg.SMTP.TLS.Dir = t.TempDir()
	cfg.MQTT.Embedded.TLS.Listen = "127.0.0.1:0"
	var buf syncBuffer
	info, _, err := serveLogged(t, cfg, &buf)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(cfg.SMTP.TLS.Dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(block.Bytes)
	fp := strings.ToUpper(hex.EncodeToString(sum[:]))
	var logged string
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "embedded MQTT broker") && strings.Contains(line, "sha256_fingerprint=") {
			_, logged, _ = strings.Cut(line, "sha256_fingerprint=")
			logged = strings.ReplaceAll(strings.Fields(logged)[0], ":", "")
		}
	}
	if logged != fp {
		t.Fatalf("logged fingerprint %q, the certificate's is %q:\n%s", logged, fp, buf.String())
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ha := mqttLogin{addr: info.BrokerTLSAddr, user: "ha", pass: haPass, args: []string{"--cafile", ca}}
	s := ha.sub(t, "edgesink/status")
	if topic, payload := s.next(t); topic != "edgesink/status" || payload != "online" {
		t.Errorf("TLS subscriber got %s %q", topic, payload)
	}
	plain := mqttLogin{addr: info.BrokerTLSAddr, user: "ha", pass: haPass}
	if ok, out := plain.pub(t, "-t", "homeassistant/status", "-m", "online"); ok {
		t.Errorf("plain MQTT on the TLS listener worked:\n%s", out)
	}
}
