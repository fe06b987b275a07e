package hass_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/registry"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// pipeline is edgesink's path in process, as cmd/edgesink wires it: real
// SMTP → snapshot stage → event (set here from the subject: the classifier
// is another stage) → memory spool → MQTT output with Home Assistant.
type pipeline struct {
	smtp string
	out  *hass.Output
	stop func()
}

func startPipeline(t *testing.T, brokerURL string, login mqttLogin, dir string, tune ...func(*hass.Config)) *pipeline {
	t.Helper()
	log := testLogger(t)
	pub, err := mqtt.New(mqtt.Config{Broker: brokerURL, ClientID: "edgesink-hass-test", Username: login.user, Password: login.pass}, log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := hass.OpenSnapshots(hass.SnapshotConfig{Store: hass.StoreLatest, MaxSize: 1 << 20, MaxRetained: 4 << 20,
		Dir: filepath.Join(dir, "snapshots")}, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := hass.DefaultConfig()
	cfg.Base, cfg.Status, cfg.QoS = "edgesink", "edgesink/status", 1
	cfg.OffDelay, cfg.BirthDelay = time.Second, 20*time.Millisecond
	cfg.Origin = hass.Origin{Version: "test", SupportURL: hass.SupportURL}
	for _, f := range tune {
		f(&cfg)
	}
	out, err := hass.New(cfg, pub, reg, snaps, log)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Config{Mode: spool.ModeMemory}, log, out)
	if err != nil {
		t.Fatal(err)
	}
	out.SetStats(func() (int, int) { st := sp.Stats(); return st.Queued, st.Dead })
	handler := snaps.Stage(sink.HandlerFunc(func(ctx context.Context, a *sink.Alert) error {
		a.Event = eventFor(a.Subject)
		return sp.Handle(ctx, a)
	}))
	srv, err := smtpd.New(smtpd.DefaultConfig(), handler, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	ctl, err := net.Listen("unix", filepath.Join(dir, hass.ControlName))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = out.ServeControl(ctl) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = srv.Close()
		_ = ctl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = sp.Drain(ctx)
		cancel()
		_ = sp.Close()
		_ = out.Close()
		_ = pub.Close()
	}
	t.Cleanup(stop)
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return &pipeline{smtp: l.Addr().String(), out: out, stop: stop}
}

// eventFor stands in for sink/classify: "<type> <state> [channel]".
func eventFor(subject string) *sink.Event {
	f := strings.Fields(subject)
	if len(f) < 2 {
		return nil
	}
	ev := &sink.Event{Type: f[0], State: f[1], Template: "test-camera"}
	if len(f) > 2 {
		ev.Channel = f[2]
	}
	return ev
}

type mqttLogin struct{ user, pass string }

// jpeg is a small image starting as a JPEG does; n makes each one differ.
func jpeg(n int) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0}
	for i := range 3000 {
		b = append(b, byte(i*n), '\n', 0)
	}
	return append(b, 0xff, 0xd9)
}

// cameraMail is a mail with two snapshots, the way Dahua sends them: as
// application/octet-stream.
func cameraMail(subject string, images ...[]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: cam@cams.lan\r\nTo: alerts@edgesink.lan\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nAlarm event.\r\n", subject)
	for i, img := range images {
		fmt.Fprintf(&b, "--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"snap%d.jpg\"\r\n"+
			"Content-Transfer-Encoding: base64\r\n\r\n", i)
		enc := base64.StdEncoding.EncodeToString(img)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--XX--\r\n")
	return b.Bytes()
}

func send(t *testing.T, addr, device string, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := smtpd.SendMail(ctx, &net.Dialer{}, addr, "cam", device+"@cams.lan", []string{"alerts@edgesink.lan"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func topicIs(topic string) func(mqtttest.Message) bool {
	return func(m mqtttest.Message) bool { return m.Topic == topic }
}

// retained collects what the broker holds retained under filter: a fresh
// subscriber gets it at once (the probe comes after it).
func retained(t *testing.T, addr, filter string, login mqtttest.Login) map[string]string {
	t.Helper()
	sub := mqtttest.SubscribeWith(t, addr, filter, login)
	out := map[string]string{}
	for {
		select {
		case m := <-sub.C():
			if m.Retained {
				out[m.Topic] = m.Payload
			}
		case <-time.After(300 * time.Millisecond):
			return out
		}
	}
}

// TestHomeAssistantEndToEnd: a camera mail with two JPEG snapshots through
// real SMTP and a real mosquitto (open, and requiring a login as Home
// Assistant's Mosquitto add-on does) → the retained device config, an
// event whose type the config lists, the motion sensor ON then OFF after
// off_delay, the image topic carrying the last attachment's bytes; Home
// Assistant's birth message → configs again; forget → empty retained
// config; a device deleted in Home Assistant → forgotten, not announced at
// the next birth; a restart → the same ids, no duplicates.
func TestHomeAssistantEndToEnd(t *testing.T) {
	for _, withLogin := range []bool{false, true} {
		t.Run(fmt.Sprintf("login=%v", withLogin), func(t *testing.T) {
			t.Parallel()
			var broker *mqtttest.Mosquitto
			var login mqtttest.Login
			var ha mqtttest.Login
			if withLogin {
				pw := testtools.RequireTool(t, "mosquitto_passwd")
				file := filepath.Join(t.TempDir(), "passwd")
				for i, u := range [][2]string{{"edgesink", "s3cret"}, {"homeassistant", "ha-pass"}} {
					args := []string{"-b", file, u[0], u[1]}
					if i == 0 {
						args = append([]string{"-c"}, args...)
					}
					if out, err := exec.Command(pw, args...).CombinedOutput(); err != nil {
						t.Fatalf("mosquitto_passwd: %v %s", err, out)
					}
				}
				broker = mqtttest.StartMosquittoWith(t, "allow_anonymous false\npassword_file "+file+"\nset_tcp_nodelay true\n")
				login, ha = mqtttest.Login{User: "edgesink", Password: "s3cret"}, mqtttest.Login{User: "homeassistant", Password: "ha-pass"}
			} else {
				broker = mqtttest.StartMosquitto(t)
			}
			addr := broker.Addr()
			dir := t.TempDir()
			live := mqtttest.SubscribeWith(t, addr, "#", login)
			p := startPipeline(t, broker.URL(), mqttLogin{login.User, login.Password}, dir)

			first, last := jpeg(1), jpeg(2)
			send(t, p.smtp, "cam1", cameraMail("motion start D2", first, last))

			const cfgTopic = "homeassistant/device/edgesink_cam1/config"
			cfgMsg := live.Next(t, 10*time.Second, topicIs(cfgTopic))
			var cfg struct {
				Cmps map[string]map[string]any `json:"cmps"`
			}
			if err := json.Unmarshal([]byte(cfgMsg.Payload), &cfg); err != nil {
				t.Fatalf("config: %v: %s", err, cfgMsg.Payload)
			}
			ev := live.Next(t, 10*time.Second, topicIs("edgesink/cam1/event"))
			var evp struct {
				EventType string `json:"event_type"`
				Channel   string `json:"channel"`
				Count     int    `json:"count"`
			}
			_ = json.Unmarshal([]byte(ev.Payload), &evp)
			types, _ := cfg.Cmps["event"]["event_types"].([]any)
			if !slices.Contains(types, any(evp.EventType)) || evp.EventType != "motion" || evp.Channel != "d2" || evp.Count != 1 {
				t.Errorf("event %s, config's event_types %v", ev.Payload, types)
			}
			if ev.Retained {
				t.Error("the event was retained")
			}
			if on := live.Next(t, 10*time.Second, topicIs("edgesink/cam1/motion/state")); on.Payload != "ON" {
				t.Errorf("motion state %q, want ON", on.Payload)
			}
			for _, topic := range []string{"edgesink/cam1/snapshot", "edgesink/cam1/d2/snapshot"} {
				if img := live.Next(t, 10*time.Second, topicIs(topic)); img.Payload != string(last) {
					t.Errorf("%s: %d bytes, not the last attachment's %d", topic, len(img.Payload), len(last))
				}
			}
			start := time.Now()
			if off := live.Next(t, 10*time.Second, topicIs("edgesink/cam1/motion/state")); off.Payload != "OFF" {
				t.Errorf("motion state %q, want OFF after off_delay", off.Payload)
			}
			t.Logf("OFF %s after ON's arrival", time.Since(start).Round(time.Millisecond))

			held := retained(t, addr, "#", login)
			for _, topic := range []string{cfgTopic, "homeassistant/device/edgesink-hub/config", "edgesink/stats", "edgesink/cam1/snapshot", "edgesink/cam1/d2/snapshot", "edgesink/cam1/motion/state"} {
				if _, ok := held[topic]; !ok {
					t.Errorf("%s not retained", topic)
				}
			}
			if _, ok := held["edgesink/cam1/event"]; ok {
				t.Error("edgesink/cam1/event retained")
			}
			if held["edgesink/cam1/snapshot"] != string(last) {
				t.Error("retained snapshot differs from the attachment")
			}

			// Home Assistant restarts: its birth message brings the configs again.
			mqtttest.Publish(t, addr, "homeassistant/status", "online", false, ha)
			if again := live.Next(t, 10*time.Second, topicIs(cfgTopic)); again.Payload != cfgMsg.Payload {
				t.Errorf("republished config differs:\n%s\n%s", again.Payload, cfgMsg.Payload)
			}

			// A second camera, deleted in Home Assistant's UI.
			send(t, p.smtp, "cam2", cameraMail("motion start", jpeg(3)))
			live.Next(t, 10*time.Second, topicIs("homeassistant/device/edgesink_cam2/config"))
			mqtttest.Publish(t, addr, "homeassistant/device/edgesink_cam2/config", "", true, ha)
			waitFor(t, func() bool { _, ok := p.out.Registry().Get("cam2"); return !ok })
			mqtttest.Publish(t, addr, "homeassistant/status", "online", false, ha)
			live.Next(t, 10*time.Second, topicIs(cfgTopic))
			if got := retained(t, addr, "homeassistant/#", login); got["homeassistant/device/edgesink_cam2/config"] != "" {
				t.Error("a device deleted in Home Assistant was announced again at its birth")
			}

			// Restart: the same device, the same ids; nothing new appears.
			p.stop()
			p = startPipeline(t, broker.URL(), mqttLogin{login.User, login.Password}, dir)
			send(t, p.smtp, "cam1", cameraMail("motion start D2", jpeg(4)))
			live.Next(t, 10*time.Second, topicIs("edgesink/cam1/event"))
			after := retained(t, addr, "homeassistant/#", login)
			if len(after) != 2 || after[cfgTopic] != cfgMsg.Payload || after["homeassistant/device/edgesink-hub/config"] == "" {
				t.Errorf("after a restart the broker holds %d configs: %v", len(after), keysOf(after))
			}
			if l := p.out.Registry().List(); len(l) != 1 || l[0].Name != "cam1" {
				t.Errorf("registry after restart: %+v", l)
			}

			// edgesink devices forget cam1, over the control socket.
			rep, err := hass.Ask(dir, hass.Request{Op: "forget", Name: "cam1"})
			if err != nil || !rep.Forgot {
				t.Fatalf("forget: %+v %v", rep, err)
			}
			// The restart announces the device once per connection event,
			// so a copy of its config may still come first; the empty one
			// must follow (Next fails the test if it does not).
			live.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == cfgTopic && m.Payload == "" })
			gone := retained(t, addr, "#", login)
			for topic := range gone {
				if strings.HasPrefix(topic, "edgesink/cam1/") || topic == cfgTopic {
					t.Errorf("%s still retained after forget", topic)
				}
			}
			if rep, _ := hass.Ask(dir, hass.Request{Op: "list"}); len(rep.Devices) != 0 {
				t.Errorf("devices after forget: %+v", rep.Devices)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(smtptest.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestAvailabilitySilence: with availability_silence a device is online
// at its mail and offline after that long without one; its entities
// carry both availability topics. A UPS on battery turns mains power OFF,
// its stop ON again; the hub's figures count the alert.
func TestAvailabilitySilence(t *testing.T) {
	t.Parallel()
	broker := mqtttest.StartMosquitto(t)
	live := mqtttest.SubscribeWith(t, broker.Addr(), "#", mqtttest.Login{})
	p := startPipeline(t, broker.URL(), mqttLogin{}, t.TempDir(), func(c *hass.Config) {
		c.AvailabilitySilence, c.StatsInterval = 300*time.Millisecond, 50*time.Millisecond
	})
	send(t, p.smtp, "ups", cameraMail("on_battery start"))
	cfg := live.Next(t, 10*time.Second, topicIs("homeassistant/device/edgesink_ups/config"))
	if !strings.Contains(cfg.Payload, `{"topic":"edgesink/ups/availability"}`) {
		t.Errorf("no per-device availability in %s", cfg.Payload)
	}
	if m := live.Next(t, 10*time.Second, topicIs("edgesink/ups/availability")); m.Payload != "online" {
		t.Errorf("availability %q, want online", m.Payload)
	}
	if m := live.Next(t, 10*time.Second, topicIs("edgesink/ups/power/state")); m.Payload != "OFF" {
		t.Errorf("mains power %q while on battery, want OFF", m.Payload)
	}
	// The hub's figures follow the alert (published at connection first).
	live.Next(t, 10*time.Second, func(m mqtttest.Message) bool {
		return m.Topic == "edgesink/stats" && strings.Contains(m.Payload, `"alerts":1`) && strings.Contains(m.Payload, `"queued":0`)
	})
	start := time.Now()
	if m := live.Next(t, 10*time.Second, topicIs("edgesink/ups/availability")); m.Payload != "offline" {
		t.Errorf("availability %q, want offline", m.Payload)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("offline after %s, before the silence", d)
	}
	send(t, p.smtp, "ups", cameraMail("on_battery stop"))
	if m := live.Next(t, 10*time.Second, topicIs("edgesink/ups/availability")); m.Payload != "online" {
		t.Errorf("availability %q after a mail, want online", m.Payload)
	}
	if m := live.Next(t, 10*time.Second, topicIs("edgesink/ups/power/state")); m.Payload != "ON" {
		t.Errorf("mains power %q after the stop, want ON", m.Payload)
	}
}

// TestPerComponentDiscovery: for Home Assistant before 2024.11 each entity
// has its own config topic; deleting the device there (empty configs)
// forgets it here too.
func TestPerComponentDiscovery(t *testing.T) {
	t.Parallel()
	broker := mqtttest.StartMosquitto(t)
	live := mqtttest.SubscribeWith(t, broker.Addr(), "homeassistant/#", mqtttest.Login{})
	p := startPipeline(t, broker.URL(), mqttLogin{}, t.TempDir(), func(c *hass.Config) { c.DeviceDiscovery = false })
	send(t, p.smtp, "cam1", cameraMail("motion start", jpeg(1)))
	want := []string{
		"homeassistant/event/edgesink_cam1/event/config",
		"homeassistant/binary_sensor/edgesink_cam1/motion/config",
		"homeassistant/sensor/edgesink_cam1/last_alert/config",
		"homeassistant/image/edgesink_cam1/snapshot/config",
	}
	for _, topic := range want {
		if m := live.Next(t, 10*time.Second, topicIs(topic)); !strings.Contains(m.Payload, `"unique_id":"edgesink_cam1_`) {
			t.Errorf("%s: %s", topic, m.Payload)
		}
	}
	if got := retained(t, broker.Addr(), "homeassistant/device/#", mqtttest.Login{}); len(got) != 0 {
		t.Errorf("device-based configs published too: %v", keysOf(got))
	}
	for _, topic := range want {
		mqtttest.Publish(t, broker.Addr(), topic, "", true, mqtttest.Login{})
	}
	waitFor(t, func() bool { _, ok := p.out.Registry().Get("cam1"); return !ok })
}
