package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/registry"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
)

// homeAssistantRun is Home Assistant discovery as serve runs it: the MQTT
// output wrapped, the snapshot stage, and the control socket 'edgesink
// devices' talks to.
type homeAssistantRun struct {
	output *hass.Output
	snaps  *hass.Snapshots
	ctl    net.Listener
}

// startHomeAssistant wraps pub for Home Assistant. The registry and the
// snapshots live in dir, the instance's directory (beside its lock, which
// the caller holds: a socket left there by a crash is stale).
//
// With spool.mode memory nothing is written: the registry and the latest
// snapshots live in RAM only (devices are announced again at their next
// mail after a restart).
func startHomeAssistant(cfg Config, pub *mqtt.Publisher, dir string, log *slog.Logger) (*homeAssistantRun, error) {
	stateDir := dir
	if cfg.Spool.Mode == spool.ModeMemory {
		stateDir = ""
	}
	reg, err := registry.Open(stateDir)
	if err != nil {
		return nil, err
	}
	scfg := cfg.Snapshots
	if stateDir != "" {
		scfg.Dir = filepath.Join(stateDir, "snapshots")
	}
	snaps, err := hass.OpenSnapshots(scfg, log)
	if err != nil {
		return nil, &configError{err}
	}
	pc := pub.Config()
	hc := cfg.HomeAssistant
	hc.Base, hc.Site, hc.Status, hc.QoS = pc.BaseTopic, pc.Site, pc.AvailabilityTopic, pc.QoS
	hc.AlertTopic = func(device string) string { return pub.Topic(&sink.Alert{Device: device}) }
	hc.Origin = hass.Origin{Version: version, SupportURL: hass.SupportURL}
	out, err := hass.New(hc, pub, reg, snaps, log)
	if err != nil {
		return nil, &configError{err}
	}
	// A directory that cannot hold a socket (some FUSE file systems, a
	// read-only spool) costs only 'edgesink devices' its way in.
	path := filepath.Join(dir, hass.ControlName)
	_ = os.Remove(path)
	ctl, err := net.Listen("unix", path)
	if err != nil {
		log.Warn("no control socket: 'edgesink devices' cannot reach this edgesink", "path", path, "err", err)
	} else {
		go func() {
			if err := out.ServeControl(ctl); err != nil {
				log.Warn("devices control socket stopped", "err", err)
			}
		}()
	}
	log.Info("Home Assistant discovery on", "prefix", hc.DiscoveryPrefix, "device_discovery", hc.DeviceDiscovery,
		"devices", len(reg.List()), "registry", reg.Path(), "snapshots", scfg.Store)
	return &homeAssistantRun{output: out, snaps: snaps, ctl: ctl}, nil
}

// setStats gives the hub device the spool's figures.
func (h *homeAssistantRun) setStats(sp *spool.Spool) {
	h.output.SetStats(func() (int, int) { st := sp.Stats(); return st.Queued, st.Dead })
}

func (h *homeAssistantRun) close() error {
	if h.ctl != nil {
		_ = h.ctl.Close() // a Unix listener removes its socket file
	}
	return h.output.Close()
}
