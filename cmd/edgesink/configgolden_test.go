package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/serial"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/status"
	"github.com/edgesink/edgesink/sink/classify"
	"github.com/edgesink/edgesink/sink/smtpd"
)

var updateConfigGolden = flag.Bool("update", false, "rewrite testdata/config/*.golden.json")

// packageConfigs is what one configuration file gives each package, and the
// few settings cmd keeps for the wiring itself.
type packageConfigs struct {
	Sink   smtpd.Config   `json:"sink"`
	MQTT   *mqtt.Config   `json:"mqtt,omitempty"`
	Serial *serial.Config `json:"serial,omitempty"`
	Spool  spool.Config   `json:"spool"`
	HTTP   status.Config  `json:"http"`
	Wiring map[string]any `json:"wiring"`
	// Home Assistant's settings from the file (the MQTT names are filled
	// in by serve), when it runs.
	HomeAssistant *hass.Config         `json:"homeassistant,omitempty"`
	Snapshots     *hass.SnapshotConfig `json:"snapshots,omitempty"`
	// Classify only when the file has devices or templates, so the
	// goldens of files without them are as they were.
	Classify *classify.Config `json:"classify,omitempty"`
}

func mapConfig(t *testing.T, cfg Config) packageConfigs {
	t.Helper()
	pc := packageConfigs{Sink: cfg.sinkConfig()}
	if broker := cfg.MQTT.Broker; broker != brokerNone {
		if broker == brokerEmbedded {
			broker = "tcp://" + cfg.MQTT.EmbeddedListen
		}
		m, err := cfg.MQTT.publisherConfig(broker, cfg.Site)
		if err != nil {
			t.Fatal(err)
		}
		pc.MQTT = &m
	}
	if cfg.Serial.Device != "" {
		s := portConfig(cfg.Serial)
		pc.Serial = &s
	}
	sp, err := spoolConfig(cfg.Spool)
	if err != nil {
		t.Fatal(err)
	}
	pc.Spool = cfg.spoolWith(sp)
	if cfg.homeAssistant() {
		h, sn := cfg.HomeAssistant, cfg.Snapshots
		pc.HomeAssistant, pc.Snapshots = &h, &sn
	}
	if len(cfg.Classify.Devices)+len(cfg.Classify.Templates) > 0 {
		pc.Classify = &cfg.Classify
	}
	pc.HTTP = cfg.HTTP
	pc.Wiring = map[string]any{
		"log": cfg.Log, "smtp.listen": cfg.SMTP.Listen, "smtp.shutdown_grace": cfg.SMTP.ShutdownGrace.String(),
		"smtp.tls": cfg.SMTP.TLS, "mqtt.broker": cfg.MQTT.Broker, "mqtt.embedded_listen": cfg.MQTT.EmbeddedListen,
		"board": cfg.Board, "site": cfg.Site, "routes": cfg.Routes,
	}
	return pc
}

// TestConfigGolden pins what every configuration file in testdata/config
// and the shipped deploy/edgesink.yaml give each package, so a rework of the
// configuration code cannot change what a user's file means unnoticed.
func TestConfigGolden(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/edgesink")
	files, _ := filepath.Glob("../../testdata/config/*.yaml")
	files = append(files, "../../deploy/edgesink.yaml")
	if len(files) < 5 {
		t.Fatalf("configuration fixtures missing: %v", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// A file with passwords must not be world-readable.
			private := filepath.Join(t.TempDir(), "edgesink.yaml")
			if err := os.WriteFile(private, data, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(private)
			if err != nil {
				t.Fatalf("%s no longer loads: %v", file, err)
			}
			got, err := json.MarshalIndent(mapConfig(t, cfg), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("../../testdata/config", strings.TrimSuffix(filepath.Base(file), ".yaml")+".golden.json")
			if file == "../../deploy/edgesink.yaml" {
				golden = "../../testdata/config/deploy-edgesink.golden.json"
			}
			if *updateConfigGolden {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (create it with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s now maps to other package settings than %s:\n%s", file, golden, got)
			}
		})
	}
}
