package hass

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/registry"
)

var update = flag.Bool("update", false, "rewrite testdata/hass/*.golden.json")

// goldenDevices are the devices whose discovery payloads are pinned: a
// camera, an NVR with channels, a UPS and a NAS.
var goldenDevices = map[string]registry.Device{
	"camera": {Name: "garage.cam", Template: "hikvision", EventTypes: []string{"motion", "tamper"}, Snapshots: true},
	"nvr": {Name: "nvr", Template: "hikvision-nvr", EventTypes: []string{"line_crossing", "motion", "video_loss"},
		Channels: []string{"d1", "d2"}, Snapshots: true},
	"ups": {Name: "ups", Template: "apcupsd", EventTypes: []string{"battery_low", "on_battery", "power_restored"}},
	"nas": {Name: "nas", Template: "synology-dsm", EventTypes: []string{"disk_failure", "disk_full", "volume_degraded", "test"}},
}

func goldenOutput(deviceDiscovery bool, silence time.Duration) *Output {
	cfg := DefaultConfig()
	cfg.DeviceDiscovery = deviceDiscovery
	cfg.AvailabilitySilence = silence
	cfg.Base, cfg.Status, cfg.QoS = "edgesink", "edgesink/status", 1
	cfg.Origin = Origin{Version: "1.2.3", SupportURL: SupportURL}
	cfg, _ = cfg.withDefaults()
	return &Output{cfg: cfg, names: names{prefix: cfg.DiscoveryPrefix, base: cfg.Base, status: cfg.Status,
		alertTopic: cfg.AlertTopic, perDeviceAvail: silence > 0}}
}

// TestDiscoveryGolden pins the discovery messages of each kind of device
// and of the hub, device-based and per component, and checks every one
// against the rules Home Assistant enforces (checkDiscovery).
func TestDiscoveryGolden(t *testing.T) {
	type golden struct {
		Topic   string          `json:"topic"`
		Payload json.RawMessage `json:"payload"`
	}
	for _, mode := range []struct {
		suffix string
		device bool
	}{{"", true}, {".components", false}} {
		o := goldenOutput(mode.device, 0)
		cases := map[string][]message{"hub": o.hubDiscovery()}
		for name, d := range goldenDevices {
			cases[name] = o.deviceDiscovery(d)
		}
		for name, msgs := range cases {
			t.Run(name+mode.suffix, func(t *testing.T) {
				var got []golden
				for _, m := range msgs {
					if mode.device {
						checkDiscovery(t, "homeassistant", m.topic, m.payload)
					} else {
						checkComponentTopic(t, "homeassistant", m.topic, m.payload)
					}
					got = append(got, golden{m.topic, m.payload})
				}
				data, err := json.MarshalIndent(got, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				data = append(data, '\n')
				path := filepath.Join("testdata", "hass", name+mode.suffix+".golden.json")
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, data, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update to write it)", err)
				}
				if !bytes.Equal(data, want) {
					t.Errorf("%s differs from what is generated now (run go test -update and review the diff):\n%s", path, data)
				}
			})
		}
	}
}

// TestDiscoveryWithSilence: per-device availability adds the device's own
// topic to each entity's availability, both required.
func TestDiscoveryWithSilence(t *testing.T) {
	o := goldenOutput(true, time.Hour)
	for _, m := range o.deviceDiscovery(goldenDevices["camera"]) {
		checkDiscovery(t, "homeassistant", m.topic, m.payload)
		if !bytes.Contains(m.payload, []byte(`"topic":"edgesink/garage.cam/availability"`)) ||
			!bytes.Contains(m.payload, []byte(`"availability_mode":"all"`)) {
			t.Errorf("no per-device availability in %s", m.payload)
		}
	}
}

// The rules below are Home Assistant's (homeassistant/components/mqtt,
// version 2025.6), restated: which keys each level takes, what each
// platform needs.
var (
	rootKeys = keys("dev device o origin cmps components qos state_topic stat_t command_topic cmd_t " +
		"availability avty availability_topic avty_t availability_mode avty_mode payload_available pl_avail " +
		"payload_not_available pl_not_avail availability_template avty_tpl encoding e")
	deviceKeys = keys("identifiers ids connections cns name manufacturer mf model mdl model_id mdl_id " +
		"sw_version sw hw_version hw serial_number sn suggested_area sa configuration_url cu via_device")
	originKeys         = keys("name sw_version sw support_url url")
	platforms          = keys("event binary_sensor sensor image")
	eventClasses       = keys("doorbell button motion")
	binaryClasses      = keys("battery battery_charging carbon_monoxide cold connectivity door garage_door gas heat light lock moisture motion moving occupancy opening plug power presence problem running safety smoke sound tamper update vibration window")
	stateClasses       = keys("measurement measurement_angle total total_increasing")
	entityCategories   = keys("config diagnostic")
	idLevelRE          = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	integerSecondsKeys = []string{"off_delay", "expire_after"}
)

func keys(s string) map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(s) {
		m[k] = true
	}
	return m
}

// checkDiscovery checks one device-based discovery message.
func checkDiscovery(t *testing.T, prefix, topic string, payload []byte) {
	t.Helper()
	levels := strings.Split(topic, "/")
	if len(levels) != 4 || levels[0] != prefix || levels[1] != "device" || levels[3] != "config" || !idLevelRE.MatchString(levels[2]) {
		t.Errorf("discovery topic %q: want %s/device/<[a-zA-Z0-9_-]+>/config", topic, prefix)
	}
	var root map[string]any
	if err := json.Unmarshal(payload, &root); err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	for k := range root {
		if !rootKeys[k] {
			t.Errorf("%s: unknown key %q at the root makes the whole message invalid", topic, k)
		}
	}
	for _, k := range []string{"dev", "o", "cmps"} {
		if root[k] == nil {
			t.Errorf("%s: %q is required at the root", topic, k)
		}
	}
	checkDevice(t, topic, root["dev"])
	checkOrigin(t, topic, root["o"])
	cmps, _ := root["cmps"].(map[string]any)
	if len(cmps) == 0 {
		t.Fatalf("%s: no components", topic)
	}
	ids := map[string]bool{}
	for key, c := range cmps {
		cfg, ok := c.(map[string]any)
		if !ok {
			t.Errorf("%s: component %s is not an object", topic, key)
			continue
		}
		if !idLevelRE.MatchString(key) {
			t.Errorf("%s: component key %q", topic, key)
		}
		p, _ := cfg["p"].(string)
		checkEntity(t, topic+" "+key, p, cfg)
		id, _ := cfg["unique_id"].(string)
		if ids[id] {
			t.Errorf("%s: unique_id %q twice", topic, id)
		}
		ids[id] = true
	}
}

// checkComponentTopic checks one per-component discovery message.
func checkComponentTopic(t *testing.T, prefix, topic string, payload []byte) {
	t.Helper()
	levels := strings.Split(topic, "/")
	if len(levels) != 5 || levels[0] != prefix || levels[4] != "config" || !platforms[levels[1]] ||
		!idLevelRE.MatchString(levels[2]) || !idLevelRE.MatchString(levels[3]) {
		t.Errorf("per-component topic %q: want %s/<platform>/<id>/<entity>/config", topic, prefix)
	}
	var cfg map[string]any
	if err := json.Unmarshal(payload, &cfg); err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	if _, ok := cfg["p"]; ok {
		t.Errorf("%s: p belongs in device-based discovery only", topic)
	}
	checkDevice(t, topic, cfg["dev"])
	checkOrigin(t, topic, cfg["o"])
	delete(cfg, "dev")
	delete(cfg, "o")
	checkEntity(t, topic, levels[1], cfg)
}

func checkDevice(t *testing.T, where string, v any) {
	t.Helper()
	dev, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: dev is not an object", where)
		return
	}
	for k := range dev {
		if !deviceKeys[k] {
			t.Errorf("%s: unknown key %q in dev makes the message invalid", where, k)
		}
	}
	ids, _ := dev["ids"].([]any)
	if len(ids) == 0 && dev["cns"] == nil {
		t.Errorf("%s: dev needs an identifier or a connection", where)
	}
	for _, id := range ids {
		if s, _ := id.(string); !strings.HasPrefix(s, "edgesink_") && !strings.HasPrefix(s, "edgesink-hub") {
			t.Errorf("%s: identifier %v is not edgesink_[site_]device or the hub's", where, id)
		}
	}
}

func checkOrigin(t *testing.T, where string, v any) {
	t.Helper()
	o, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: o is not an object", where)
		return
	}
	for k := range o {
		if !originKeys[k] {
			t.Errorf("%s: unknown key %q in o makes the message invalid", where, k)
		}
	}
	if name, _ := o["name"].(string); name != "edgesink" {
		t.Errorf("%s: o.name = %v, want edgesink", where, o["name"])
	}
}

// checkEntity checks one entity's configuration for platform p.
func checkEntity(t *testing.T, where, p string, cfg map[string]any) {
	t.Helper()
	if !platforms[p] {
		t.Errorf("%s: platform %q", where, p)
	}
	if id, _ := cfg["unique_id"].(string); id == "" {
		t.Errorf("%s: no unique_id", where)
	}
	if q, ok := cfg["qos"].(float64); !ok || (q != 0 && q != 1 && q != 2) {
		t.Errorf("%s: qos %v: set it on each entity (a device-level qos is not passed down)", where, cfg["qos"])
	}
	if _, ok := cfg["object_id"]; ok {
		t.Errorf("%s: object_id is deprecated (default_entity_id)", where)
	}
	if c, ok := cfg["entity_category"].(string); ok && !entityCategories[c] {
		t.Errorf("%s: entity_category %q", where, c)
	}
	for k, v := range cfg {
		if strings.HasSuffix(k, "_topic") {
			s, _ := v.(string)
			if s == "" || strings.ContainsAny(s, "+#") || strings.HasPrefix(s, "/") || strings.Contains(s, "//") {
				t.Errorf("%s: %s %q is not a topic to subscribe to", where, k, v)
			}
		}
	}
	if av, ok := cfg["availability"]; ok {
		list, _ := av.([]any)
		for _, a := range list {
			if m, _ := a.(map[string]any); m == nil || m["topic"] == nil {
				t.Errorf("%s: availability entry without topic: %v", where, a)
			}
		}
	}
	for _, k := range integerSecondsKeys {
		if v, ok := cfg[k]; ok {
			f, isNum := v.(float64)
			if !isNum || f != math.Trunc(f) || f <= 0 {
				t.Errorf("%s: %s = %v: want whole seconds", where, k, v)
			}
		}
	}
	switch p {
	case "event":
		types, _ := cfg["event_types"].([]any)
		if cfg["state_topic"] == nil || len(types) == 0 {
			t.Errorf("%s: an event needs state_topic and event_types", where)
		}
		for _, ty := range types {
			if !slices.Contains(vocabulary, fmt.Sprint(ty)) {
				t.Errorf("%s: event type %v outside the vocabulary", where, ty)
			}
		}
		if c, ok := cfg["device_class"].(string); ok && !eventClasses[c] {
			t.Errorf("%s: event device_class %q (only doorbell, button, motion)", where, c)
		}
	case "binary_sensor":
		if cfg["state_topic"] == nil {
			t.Errorf("%s: no state_topic", where)
		}
		if c, ok := cfg["device_class"].(string); ok && !binaryClasses[c] {
			t.Errorf("%s: binary_sensor device_class %q", where, c)
		}
	case "sensor":
		if cfg["state_topic"] == nil {
			t.Errorf("%s: no state_topic", where)
		}
		if c, ok := cfg["state_class"].(string); ok && !stateClasses[c] {
			t.Errorf("%s: state_class %q", where, c)
		}
	case "image":
		_, img := cfg["image_topic"]
		_, url := cfg["url_topic"]
		if img == url {
			t.Errorf("%s: an image takes exactly one of image_topic and url_topic", where)
		}
		if e, ok := cfg["image_encoding"]; ok && e != "b64" {
			t.Errorf("%s: image_encoding %v (absent for raw, or b64)", where, e)
		}
	}
}

// TestIDs: ids and discovery topic levels use only [a-zA-Z0-9_-], carry
// the site, and the hub's cannot be a device's.
func TestIDs(t *testing.T) {
	for _, c := range []struct{ site, device, want string }{
		{"", "cam1", "edgesink_cam1"},
		{"home", "cam1", "edgesink_home_cam1"},
		{"", "garage.cam-2", "edgesink_garage_cam-2"},
	} {
		if got := ID(c.site, c.device); got != c.want || !idLevelRE.MatchString(got) {
			t.Errorf("ID(%q, %q) = %q, want %q", c.site, c.device, got, c.want)
		}
	}
	if HubID("") == ID("", "hub") || !idLevelRE.MatchString(HubID("x")) {
		t.Error("the hub's id can be a device's")
	}
}

// FuzzID: whatever the name, the id is a valid topic level.
func FuzzID(f *testing.F) {
	f.Add("cam1")
	f.Add("a/b+#\x00é")
	f.Fuzz(func(t *testing.T, s string) {
		if id := ID("", s); !idLevelRE.MatchString(id) {
			t.Errorf("ID(%q) = %q", s, id)
		}
	})
}
