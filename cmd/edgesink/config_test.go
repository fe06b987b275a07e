package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const exampleConfig = "../../deploy/edgesink.yaml"

// TestExampleConfigIsTheDefaults keeps the documented example honest: it
// parses, it equals DefaultConfig, and it mentions every key there is.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	cfg, err := LoadConfig(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Errorf("example config differs from DefaultConfig:\n%+v\n%+v", cfg, DefaultConfig())
	}
	data, _ := os.ReadFile(exampleConfig)
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	got, want := keysOf(doc, ""), yamlKeys(reflect.TypeOf(Config{}), "")
	// A map setting (coalesce.auto_stop) is one key; its entries are data.
	got = slices.DeleteFunc(got, func(k string) bool { return strings.HasPrefix(k, "coalesce.auto_stop.") })
	if data := string(data); strings.Contains(data, "auto_stop:") {
		got = append(got, "coalesce.auto_stop")
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("example keys:\n%v\nconfig keys:\n%v", got, want)
	}
}

func keysOf(m map[string]any, prefix string) []string {
	var out []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, keysOf(sub, prefix+k+".")...)
		} else {
			out = append(out, prefix+k)
		}
	}
	return out
}

func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case opts == "inline":
			out = append(out, yamlKeys(f.Type, prefix)...)
		case f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time":
			out = append(out, yamlKeys(f.Type, prefix+name+".")...)
		default:
			out = append(out, prefix+name)
		}
	}
	return out
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "smtp:\n  listen: 127.0.0.1:25\n  max_size: 10\n", "line 3: field max_size not found"},
		{"bad duration", "smtp:\n  read_timeout: soon\n", `line 2: "soon" is not a duration`},
		{"bad size", "smtp:\n\n  max_message_size: lots\n", `line 3: "lots" is not a size`},
		{"wrong type", "smtp:\n  max_recipients: many\n", "line 2: cannot unmarshal"},
		{"bad listen", "log:\n  level: info\nsmtp:\n  listen: nowhere\n", "line 4: smtp.listen"},
		{"bad topic", "mqtt:\n  topic: alerts/#\n", "line 2: mqtt.topic"},
		{"bad placeholder", "mqtt:\n  topic: alerts/{devise}\n", "unknown placeholder {devise}"},
		{"bad discovery prefix", "homeassistant:\n  enabled: true\n  discovery_prefix: ha/#\n", "line 3: homeassistant.discovery_prefix"},
		{"bad snapshot store", "snapshots:\n  store: cloud\n", "line 2: snapshots.store"},
		{"off_delay in ms", "homeassistant:\n  off_delay: 500ms\n", "line 2: homeassistant.off_delay"},
		{"qos 0", "mqtt:\n  broker: tcp://10.0.0.2:1883\n  qos: 0\n", "line 3: mqtt.qos"},
		{"bad broker", "mqtt:\n  broker: 10.0.0.2\n", "line 2: mqtt.broker"},
		{"bad parity", "serial:\n  device: /dev/ttyUSB0\n  parity: maybe\n", "serial: serial: parity"},
		{"no outputs", "mqtt:\n  broker: none\n", "no output configured"},
		{"bad level", "log:\n  level: loud\n", "line 2: log.level"},
		{"short lines", "smtp:\n  max_line_length: 80\n", "line 2: smtp.max_line_length"},
		{"zero timeout", "smtp:\n  data_timeout: 0s\n", "line 2: smtp.data_timeout"},
		{"not yaml", "smtp: [\n", "line 1"},
		{"memory below message size", "smtp:\n  max_message_size: 10MiB\n  max_memory: 8MiB\n", "line 3: smtp.max_memory"},
		{"bad site", "log:\n  level: info\nsite: Garage/1\n", "line 3: site"},
		{"bad base topic", "mqtt:\n  base_topic: home/+\n", "line 2: mqtt.base_topic"},
		{"negative window", "coalesce:\n  window: -1s\n", "line 2: coalesce.window"},
		{"negative auto-stop", "coalesce:\n  auto_stop:\n    motion: -1s\n", "line 2: coalesce.auto_stop"},
		{"off_delay within auto-stop", "coalesce:\n  auto_stop:\n    motion: 10m\n", "homeassistant.off_delay: 5m0s is not longer than coalesce.auto_stop.motion (10m0s)"},
		{"route to a missing output", "log:\n  level: info\nroutes:\n  - match: {device: printer}\n    outputs: serial\n", "line 3: routes: rule 1: outputs: serial: no serial output is configured (serial.device)"},
		{"route with a bad regexp", "routes:\n  - {match: {subject: \"(\"}}\n", "line 1: routes: rule 1: match.subject"},
		{"route with a bad topic", "routes:\n  - {topic: \"cams/+/x\"}\n", "rule 1: topic"},
		{"route key unknown", "routes:\n  - {match: {devise: cam}}\n", "line 2: field devise not found"},
		{"broker user without a hash", "mqtt:\n  embedded_users:\n    ha: {password: secret, role: homeassistant}\n", "line 2: mqtt.embedded_users: \"ha\": password is not a bcrypt hash"},
		{"broker user bad role", "mqtt:\n  embedded_users:\n    ha: {password: \"$2a$10$t8L/udNKJMUlhY1ENvyR.ufkE/uTjou6kQXpbY5usGj5qFBKOV1C.\", role: admin}\n", "line 2: mqtt.embedded_users: \"ha\": role \"admin\""},
		{"broker user is edgesink", "mqtt:\n  embedded_users:\n    edgesink: {password: \"$2a$10$t8L/udNKJMUlhY1ENvyR.ufkE/uTjou6kQXpbY5usGj5qFBKOV1C.\", role: reader}\n", "edgesink's own output"},
		{"broker tls half", "mqtt:\n  embedded_tls:\n    listen: 0.0.0.0:8883\n    cert_file: /etc/c.pem\n", "line 4: mqtt.embedded_tls.cert_file"},
		{"broker tls listen", "mqtt:\n  embedded_tls:\n    listen: everywhere\n", "line 3: mqtt.embedded_tls.listen"},
		// Each package validates its own section; cmd names the key and line.
		{"placeholder in base topic", "mqtt:\n  base_topic: home/{device}\n", "line 2: mqtt.base_topic"},
		{"qos 3", "mqtt:\n  broker: tcp://10.0.0.2:1883\n  qos: 3\n", "line 3: mqtt.qos"},
		{"bad availability topic", "mqtt:\n  availability_topic: a/#\n", "line 2: mqtt.availability_topic"},
		{"bad scheme", "mqtt:\n  broker: foo://10.0.0.2\n", "line 2: mqtt.broker"},
		{"zero grace", "smtp:\n  shutdown_grace: 0s\n", "line 2: smtp.shutdown_grace"},
		{"zero errors", "smtp:\n  max_errors: 0\n", "line 2: smtp.max_errors"},
		{"zero per address", "smtp:\n  max_connections_per_ip: 0\n", "line 2: smtp.max_connections_per_ip"},
		{"duration without unit", "smtp:\n  write_timeout: 30\n", `line 2: "30" is not a duration`},
		{"bad auth mode", "auth:\n  mode: maybe\n", "line 2: auth.mode"},
		{"required without users", "auth:\n  mode: required\n", "auth.users"},
		{"bad hash", "auth:\n  users:\n    cam: plain\n", "line 2: auth.users"},
		{"bad spool mode", "spool:\n  mode: tape\n", "line 2: spool.mode"},
		{"zero spool alerts", "spool:\n  max_alerts: 0\n", "line 2: spool.max_alerts"},
		{"zero spool size", "spool:\n  max_size: 0B\n", "line 2: spool.max_size"},
		{"zero attempts", "spool:\n  max_attempts: 0\n", "line 2: spool.max_attempts"},
		{"zero retry", "spool:\n  retry_min: 0s\n", "line 2: spool.retry_min"},
		{"zero deliver timeout", "spool:\n  deliver_timeout: 0s\n", "line 2: spool.deliver_timeout"},
		{"retry max below min", "spool:\n  retry_min: 1m\n  retry_max: 1s\n", "line 3: spool.retry_max"},
		{"not a key of the package", "spool:\n  lanes: 4\n", "line 2: field lanes not found"},
		{"short serial lines", "serial:\n  device: /dev/ttyUSB0\n  max_line_length: 4\n", "serial: serial: max line length"},
		{"bad serial template", "serial:\n  device: /dev/ttyUSB0\n  template: \"{nope}\"\n", "unknown placeholder {nope}"},
		{"bad template regexp", "templates:\n  - name: a\n    subject: x\n    type: door\n    state: start\n  - name: b\n    type: door\n    state: start\n    body: \"(unclosed\"\n", "line 9: templates.1.body: error parsing regexp"},
		{"bad template type", "templates:\n  - name: a\n    subject: x\n    type: person\n    state: start\n", "line 4: templates.0.type"},
		{"unknown template key", "templates:\n  - name: a\n    subjet: x\n", "line 3: field subjet not found"},
		{"bad device name", "devices:\n  - {name: Garage Cam, helo: x}\n", "line 2: devices.0.name"},
		{"device without match", "devices:\n  - name: cam\n", "line 2: devices.0: device \"cam\" matches nothing"},
		{"device bad ip", "devices:\n  - name: cam\n    ip: garage\n", "line 3: devices.ip: \"garage\""},
		{"device unknown template", "devices:\n  - name: cam\n    helo: x\n    template: hikvison\n", "line 4: devices.0.template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestConfigValues(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
smtp:
  listen: 0.0.0.0:25
  max_message_size: 10MB
  data_timeout: 2m
mqtt:
  broker: tcp://192.168.1.10:1883
  username: edge
serial:
  device: /dev/serial0
  baud: 115200
  stop_bits: "2"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.Listen.String() != "0.0.0.0:25" || cfg.SMTP.MaxMessageBytes != 10_000_000 || cfg.SMTP.DataTimeout.String() != "2m0s" ||
		cfg.MQTT.Broker != "tcp://192.168.1.10:1883" || cfg.MQTT.Username != "edge" || cfg.MQTT.QoS != 1 ||
		cfg.Serial.Baud != 115200 || cfg.Serial.StopBits != "2" || cfg.Serial.Parity != "none" {
		t.Errorf("parsed %+v", cfg)
	}
	if empty, err := ParseConfig(nil); err != nil || !reflect.DeepEqual(empty, DefaultConfig()) {
		t.Errorf("empty file: %v", err)
	}
}

// TestNetworksAreMasked: smtp.allow_networks takes networks and single
// addresses, and keeps a network as its masked prefix.
func TestNetworksAreMasked(t *testing.T) {
	cfg, err := ParseConfig([]byte("smtp:\n  allow_networks: [10.1.2.3/8, 192.168.1.20, \"fe80::1\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.SMTP.Policy.Networks); got != "[10.0.0.0/8 192.168.1.20/32 fe80::1/128]" {
		t.Errorf("networks %s", got)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := map[string]int64{"0": 0, "1024": 1024, "25MiB": 25 << 20, "10MB": 10_000_000, "512 KiB": 512 << 10, "1gib": 1 << 30, "7B": 7}
	for in, want := range tests {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5MB", "MB", "10XB", "99999999999GiB"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) accepted", bad)
		}
	}
}

func TestMQTTTLSFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for _, tt := range []struct{ yaml, want string }{
		{"mqtt:\n  broker: ssl://h:8883\n  tls:\n    ca_file: " + filepath.Join(dir, "missing.pem") + "\n", "read ca_file"},
		{"mqtt:\n  broker: ssl://h:8883\n  tls:\n    ca_file: " + notPEM + "\n", "no PEM certificate"},
		{"mqtt:\n  broker: ssl://h:8883\n  tls:\n    cert_file: x.pem\n", "go together"},
	} {
		if _, err := ParseConfig([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
	if _, err := ParseConfig([]byte("mqtt:\n  broker: ssl://h:8883\n")); err != nil {
		t.Errorf("ssl broker with system roots: %v", err)
	}
}

func TestPolicyConfigErrors(t *testing.T) {
	for conf, want := range map[string]string{
		"smtp:\n  allow_networks: [192.168.1.0/33]\n":         "line 2: smtp.allow_networks",
		"smtp:\n  allow_networks: []\n":                       "line 2: smtp.allow_networks: empty",
		"smtp:\n  allow_senders: [\"a@b@c\"]\n":               "line 2: smtp.allow_senders",
		"smtp:\n  allow_recipients: [\"<x@y>\"]\n":            "line 2: smtp.allow_recipients",
		"smtp:\n  max_mails_per_minute: -1\n":                 "smtp.max_mails_per_minute",
		"smtp:\n  allow_networks: [192.168.1.20, \"::/0\"]\n": "",
	} {
		_, err := ParseConfig([]byte(conf))
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", conf, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", conf, err, want)
		}
	}
}
