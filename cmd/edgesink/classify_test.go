package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink"
)

// TestEventsEndToEnd: the four devices of the issue (a Hikvision NVR, a
// Dahua camera, an APC UPS via apcupsd, a Synology NAS) mail the real
// serve() wiring with no configuration, and the alert on MQTT says what
// happened. Then the devices map names the Dahua camera by its HELO, and
// a SIGHUP brings in a user template that wins over the built-in one.
func TestEventsEndToEnd(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	cfg := testConfig(t, broker.URL(), "")
	cfg.path = filepath.Join(t.TempDir(), "edgesink.yaml")
	writeFile(t, cfg.path, "devices:\n  - {name: front-cam, helo: dahua-ipc, display_name: Front door}\n")
	reloaded, err := LoadConfig(cfg.path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Classify = reloaded.Classify
	es := startEdgesink(t, cfg)

	send := func(t *testing.T, file, helo, from string) sink.Alert {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join("../../testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := sendMail(context.Background(), es.SMTPAddr, helo, from, []string{"alerts@edgesink.lan"}, raw); err != nil {
			t.Fatalf("send: %v", err)
		}
		msg := sub.Next(t, 10*time.Second, nil)
		var a sink.Alert
		dec := json.NewDecoder(bytes.NewReader([]byte(msg.Payload)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("payload: %v\n%s", err, msg.Payload)
		}
		if a.Event == nil {
			t.Fatalf("no event in %s", msg.Payload)
		}
		if want := "edgesink/" + a.Device + "/alert"; msg.Topic != want {
			t.Errorf("topic %s, want %s", msg.Topic, want)
		}
		return a
	}

	for _, tc := range []struct {
		file, helo, from string
		device, display  string
		want             sink.Event
	}{
		{"classify/hikvision-nvr-line-crossing.eml", "DS-7608NI", "nvr@cams.lan", "nvr", "",
			sink.Event{Type: "line_crossing", State: "start", Channel: "D3", Camera: "Driveway", Template: "hikvision-nvr"}},
		{"classify/dahua-ipc-motion-start.eml", "dahua-ipc", "ipc@cams.lan", "front-cam", "Front door",
			sink.Event{Type: "motion", State: "start", Channel: "1", Camera: "Backyard", Template: "dahua"}},
		{"classify/apcupsd-onbattery.eml", "server", "root@server.lan", "root", "",
			sink.Event{Type: "on_battery", State: "start", Camera: "myups", Template: "apcupsd"}},
		{"corpus/synology-volume.eml", "DiskStation", "nas@home.lan", "nas", "",
			sink.Event{Type: "disk_full", State: "none", Camera: "DiskStation", Template: "synology"}},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			a := send(t, tc.file, tc.helo, tc.from)
			if *a.Event != tc.want || a.Device != tc.device || a.DisplayName != tc.display {
				t.Errorf("device %q (%q), event %+v\nwant device %q (%q), event %+v", a.Device, a.DisplayName, *a.Event, tc.device, tc.display, tc.want)
			}
		})
	}

	t.Run("SIGHUP reloads templates and devices", func(t *testing.T) {
		writeFile(t, cfg.path, strings.Join([]string{
			"devices:",
			"  - {name: porch-cam, helo: dahua-ipc}",
			"templates:",
			"  - name: porch",
			"    subject: '^IPC Message$'",
			"    body: 'Alarm Input Channel:\\s*(?P<channel>\\d+)'",
			"    type: intrusion",
			"    state: start",
			""}, "\n"))
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		want := sink.Event{Type: "intrusion", State: "start", Channel: "1", Template: "porch"}
		deadline := time.Now().Add(10 * time.Second)
		for {
			a := send(t, "classify/dahua-ipc-motion-start.eml", "dahua-ipc", "ipc@cams.lan")
			if *a.Event == want && a.Device == "porch-cam" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after SIGHUP: device %q event %+v", a.Device, *a.Event)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("a broken file keeps what was loaded", func(t *testing.T) {
		writeFile(t, cfg.path, "templates:\n  - name: x\n    body: '(unclosed'\n    type: door\n    state: start\n")
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // nothing to wait for: the old rules must simply stay
		if a := send(t, "classify/dahua-ipc-motion-start.eml", "dahua-ipc", "ipc@cams.lan"); a.Event.Template != "porch" {
			t.Errorf("a broken reload replaced the templates: %+v", *a.Event)
		}
	})
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestClassifyCommand: 'edgesink classify' prints the alert a mail would
// become, with the config's devices map and templates.
func TestClassifyCommand(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	writeFile(t, conf, "devices:\n  - {name: garage, ip: 192.168.1.23, display_name: Garage}\n")
	h := host{config: "/nonexistent", stateDir: "/nonexistent", getenv: func(string) string { return "" }}
	var out, errb bytes.Buffer
	code := runClassify([]string{"--config", conf, "--remote-addr", "192.168.1.23:4000", "../../testdata/corpus/hikvision-motion.eml"}, &out, &errb, h)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var a sink.Alert
	if err := json.Unmarshal(out.Bytes(), &a); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := sink.Event{Type: "motion", State: "start", Channel: "D1", Camera: "Garage", Template: "hikvision-nvr"}
	if a.Device != "garage" || a.DisplayName != "Garage" || a.MailFrom != "cam-garage@cams.lan" || a.Event == nil || *a.Event != want {
		t.Errorf("alert: device %q %q from %q event %+v", a.Device, a.DisplayName, a.MailFrom, a.Event)
	}

	out.Reset()
	if code := runClassify([]string{"--templates"}, &out, &errb, h); code != exitOK || !strings.Contains(out.String(), "hikvision-nvr") || !strings.HasSuffix(strings.TrimSpace(out.String()), "any device (keyword fallback)") {
		t.Errorf("--templates: %d\n%s", code, out.String())
	}
	if code := runClassify(nil, &out, &errb, h); code != exitUsage {
		t.Errorf("no file: exit %d", code)
	}
	writeFile(t, conf, "templates:\n  - name: x\n    body: '(unclosed'\n    type: door\n    state: start\n")
	errb.Reset()
	if code := runClassify([]string{"--config", conf, "../../testdata/corpus/hikvision-motion.eml"}, &out, &errb, h); code != exitUsage || !strings.Contains(errb.String(), "line 3: templates.0.body") {
		t.Errorf("bad config: exit %d: %s", code, errb.String())
	}
}
