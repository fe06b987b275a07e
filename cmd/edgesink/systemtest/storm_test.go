package systemtest

// Storms and routes with the real binary, mosquitto, SMTP and a pty.
//
// The storm tests rely on sink/classify recognising a Hikvision motion mail
// (testdata/corpus/hikvision-motion.eml: "Motion Detection Alarm") as a
// motion start; they fail, saying so, if the first alert shows it does not.
// The same logic is tested on alerts carrying their event in forward/spool.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/serial/serialtest"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

func corpusMail(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "corpus", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

func send(t *testing.T, addr, from string, raw []byte) {
	t.Helper()
	if err := smtptest.SendMail(context.Background(), nil, addr, "storm", from, "alerts@edgesink.lan", raw); err != nil {
		t.Fatalf("mail from %s refused: %v", from, err)
	}
}

// alertStream decodes the alerts a subscriber sees.
type alertStream struct {
	sub *mqtttest.Subscriber
	got []*sink.Alert
}

func (s *alertStream) next(t *testing.T, timeout time.Duration) *sink.Alert {
	t.Helper()
	m := s.sub.Next(t, timeout, nil)
	var a sink.Alert
	if err := json.Unmarshal([]byte(m.Payload), &a); err != nil {
		t.Fatalf("payload on %s: %v", m.Topic, err)
	}
	s.got = append(s.got, &a)
	return &a
}

// until reads alerts until done says so, failing after timeout.
func (s *alertStream) until(t *testing.T, timeout time.Duration, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out waiting for %s; seen %s", what, describe(s.got))
		}
		s.next(t, left)
	}
}

// accounted: every mail id the alerts stand for (own id, or folded_ids)
// and the sum of their counts (1 for an alert without one).
func accounted(got []*sink.Alert) (ids map[string]bool, sum int) {
	ids = map[string]bool{}
	for _, a := range got {
		switch {
		case a.Synthetic:
		case a.Count > 0:
			sum += a.Count
			for _, id := range a.FoldedIDs {
				ids[id] = true
			}
		default:
			sum++
			ids[a.ID] = true
		}
	}
	return ids, sum
}

func describe(got []*sink.Alert) string {
	var b strings.Builder
	for _, a := range got {
		fmt.Fprintf(&b, "\n  %s", a.ID)
		if a.Event != nil {
			fmt.Fprintf(&b, " %s/%s/%s", a.Event.Channel, a.Event.Type, a.Event.State)
		}
		if a.Count > 0 {
			fmt.Fprintf(&b, " count=%d", a.Count)
		}
		if a.Synthetic {
			b.WriteString(" synthetic")
		}
	}
	return b.String()
}

func synthetic(got []*sink.Alert) int {
	n := 0
	for _, a := range got {
		if a.Synthetic {
			n++
		}
	}
	return n
}

// needsMotionEvents fails the test when the binary gave a Hikvision motion
// mail no motion start: nothing would be coalesced.
func needsMotionEvents(t *testing.T, first *sink.Alert) {
	t.Helper()
	if first.Event == nil || first.Event.Type != "motion" || first.Event.State != "start" {
		t.Fatalf("sink/classify gives a Hikvision motion mail no motion start (got %+v): the storm tests need one", first.Event)
	}
}

const stormConfig = "coalesce:\n  window: %s\n  auto_stop:\n    motion: %s\nmqtt:\n  max_reconnect_interval: 1s\n"

// TestStormCoalesced: 50 motion mails from one NVR channel, none refused,
// become the first alert at once, one follow-up and a synthetic stop, and
// the counts over distinct ids add up to exactly 50.
func TestStormCoalesced(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	stream := &alertStream{sub: mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")}
	conf := writeConfig(t, fmt.Sprintf(stormConfig, "5s", "2s"))
	_, addr := startBinary(t, binary(t), "--config", conf, "--smtp-listen", "127.0.0.1:0",
		"--mqtt-broker", broker.URL(), "--spool-dir", t.TempDir())
	raw := corpusMail(t, "hikvision-motion.eml")

	send(t, addr, "nvr@cams.lan", raw)
	first := stream.next(t, 10*time.Second)
	needsMotionEvents(t, first)
	began := time.Now()
	for range 49 {
		send(t, addr, "nvr@cams.lan", raw)
	}
	burst := time.Since(began)
	stream.until(t, 20*time.Second, "the synthetic stop", func() bool { return synthetic(stream.got) == 1 })

	ids, sum := accounted(stream.got)
	if len(ids) != 50 || sum != 50 {
		t.Fatalf("counts add to %d over %d distinct ids, want 50: %s", sum, len(ids), describe(stream.got))
	}
	last := stream.got[len(stream.got)-1]
	if !last.Synthetic || last.Event.State != "stop" || first.Count != 0 {
		t.Fatalf("want the first, follow-ups, then the stop: %s", describe(stream.got))
	}
	if burst < 5*time.Second && len(stream.got) != 3 {
		t.Fatalf("a burst of %v within one 5s window sent %d messages, want 3: %s", burst, len(stream.got), describe(stream.got))
	}
}

// TestStormKilled: the binary is killed with SIGKILL in the middle of a
// storm and restarted; the counts over distinct ids still cover all 50
// mails (duplicates allowed, losses not), and the storm still ends with a
// synthetic stop.
func TestStormKilled(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	stream := &alertStream{sub: mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")}
	conf := writeConfig(t, fmt.Sprintf(stormConfig, "30s", "3s"))
	args := []string{"--config", conf, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", t.TempDir()}
	raw := corpusMail(t, "hikvision-motion.eml")

	first, addr := startBinary(t, binary(t), args...)
	send(t, addr, "nvr@cams.lan", raw)
	needsMotionEvents(t, stream.next(t, 10*time.Second))
	for range 24 {
		send(t, addr, "nvr@cams.lan", raw)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if len(stream.got) != 1 {
		t.Fatalf("the window was open, yet before the kill MQTT saw %s", describe(stream.got))
	}

	_, addr = startBinary(t, binary(t), args...)
	for range 25 {
		send(t, addr, "nvr@cams.lan", raw)
	}
	stream.until(t, 30*time.Second, "all 50 mails and a stop after them", func() bool {
		ids, _ := accounted(stream.got)
		return len(ids) == 50 && stream.got[len(stream.got)-1].Synthetic
	})
	ids, sum := accounted(stream.got)
	t.Logf("after the kill: %d messages, counts add to %d over %d distinct ids", len(stream.got), sum, len(ids))
}

// TestStartSurvivesRestart: a channel left in start when the binary is
// killed gets its synthetic stop after the restart, on time.
func TestStartSurvivesRestart(t *testing.T) {
	const autoStop = 3 * time.Second
	broker := mqtttest.StartMosquitto(t)
	stream := &alertStream{sub: mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")}
	conf := writeConfig(t, fmt.Sprintf(stormConfig, "30s", autoStop))
	spoolDir := t.TempDir()
	args := []string{"--config", conf, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", spoolDir}

	first, addr := startBinary(t, binary(t), args...)
	sent := time.Now()
	send(t, addr, "nvr@cams.lan", corpusMail(t, "hikvision-motion.eml"))
	start := stream.next(t, 10*time.Second)
	needsMotionEvents(t, start)
	state := filepath.Join(spoolDir, "coalesce.json")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if data, _ := os.ReadFile(state); strings.Contains(string(data), start.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not name the start %s", state, start.ID)
		}
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	startBinary(t, binary(t), args...)
	// The start may come again first: killed between its PUBACK and its
	// removal from the queue, it is delivered twice (at least once).
	stop := stream.next(t, 10*time.Second)
	for stop.ID == start.ID {
		stop = stream.next(t, 10*time.Second)
	}
	took := time.Since(sent)
	if !stop.Synthetic || stop.Event == nil || stop.Event.State != "stop" || stop.ID != start.ID+"-stop" {
		t.Fatalf("after the restart: %s", describe(stream.got))
	}
	if took > autoStop+3*time.Second {
		t.Fatalf("the stop came %v after the start, want about %v", took, autoStop)
	}
}

// TestRoutes: a printer's mail goes only to the serial line, a camera's
// only to MQTT under its own topic, an alert no rule matches to both; on
// SIGHUP the rules are read again for new mail.
func TestRoutes(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/#")
	pty := serialtest.StartPty(t)
	rules := func(printerTo string) string {
		return fmt.Sprintf("serial:\n  device: %s\n  template: \"{device}|{subject}\"\nroutes:\n"+
			"  - name: printers\n    match: {device: \"printer*\"}\n    outputs: %s\n    serial: \"PRINTER {device}: {subject}\"\n"+
			"  - match: {sender: \"*@cams.lan\"}\n    outputs: mqtt\n    topic: \"{base}/cameras/{device}\"\n", pty.Dev, printerTo)
	}
	conf := writeConfig(t, rules("serial"))
	cmd, addr := startBinary(t, binary(t), "--config", conf, "--smtp-listen", "127.0.0.1:0",
		"--mqtt-broker", broker.URL(), "--spool-dir", t.TempDir())

	send(t, addr, "printer@office.lan", corpusMail(t, "hp-printer-toner.eml"))
	send(t, addr, "cam-garage@cams.lan", corpusMail(t, "hikvision-motion.eml"))
	send(t, addr, "ups@rack.lan", corpusMail(t, "apc-ups-onbattery.eml")) // no rule: both

	var lines []string
	for len(lines) < 2 {
		lines = append(lines, pty.NextLine(t, 10*time.Second))
	}
	// Alerts only: Home Assistant's messages (events, states, snapshots,
	// the hub's figures) go out beside them, on their own topics.
	alerts := func(m mqtttest.Message) bool {
		return strings.HasSuffix(m.Topic, "/alert") || strings.HasPrefix(m.Topic, "edgesink/cameras/")
	}
	var topics []string
	for len(topics) < 2 {
		topics = append(topics, sub.Next(t, 10*time.Second, alerts).Topic)
	}
	time.Sleep(300 * time.Millisecond) // anything misrouted would be here by now
	select {
	case l := <-pty.Lines():
		lines = append(lines, l)
	default:
	}
	for len(sub.C()) > 0 {
		if m := <-sub.C(); alerts(m) {
			topics = append(topics, m.Topic)
		}
	}
	joined := strings.Join(lines, "\n")
	if len(lines) != 2 || !strings.Contains(joined, "PRINTER printer: Niveau de toner") || !strings.Contains(joined, "ups|UPS On Battery") {
		t.Errorf("serial lines %q, want the printer's (its rule's line) and the ups's", lines)
	}
	if strings.Join(topics, " ") != "edgesink/cameras/cam-garage edgesink/ups/alert" && strings.Join(topics, " ") != "edgesink/ups/alert edgesink/cameras/cam-garage" {
		t.Errorf("MQTT topics %q, want the camera's own and the ups's", topics)
	}

	// The printer goes to MQTT too from now on, for new mail.
	if err := os.WriteFile(conf, []byte(rules("both")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Each try is another printer: a mail that raced the reload opens a
	// coalescing window under the old rules, and the same printer's next
	// mails would fold into it.
	deadline := time.Now().Add(10 * time.Second)
	for try := 1; ; try++ {
		send(t, addr, fmt.Sprintf("printer%d@office.lan", try), corpusMail(t, "hp-printer-toner.eml"))
		select {
		case m := <-sub.C():
			if !alerts(m) {
				continue
			}
			if !strings.HasPrefix(m.Topic, "edgesink/printer") || !strings.HasSuffix(m.Topic, "/alert") {
				t.Fatalf("after SIGHUP a printer's mail went to %s", m.Topic)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the routing rules within 10s")
		}
	}
}
