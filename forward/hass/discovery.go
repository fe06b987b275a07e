package hass

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/edgesink/edgesink/forward/registry"
)

// kind is a stateful kind of event: one binary_sensor per device, ON while
// any event of its types is started (on any channel), OFF once all stopped.
type kind struct {
	name        string // topic level and component key: {base}/{device}/{name}/state
	deviceClass string
	label       string // the entity's name in Home Assistant
	// inverted kinds are ON when nothing is started: power is ON on mains
	// and goes OFF while the UPS runs on battery.
	inverted bool
	// safetyNet kinds get off_delay: events whose end is usually
	// synthetic (auto-stop), so a lost stop cannot leave them ON.
	safetyNet bool
}

var (
	kindMotion  = &kind{name: "motion", deviceClass: "motion", label: "Motion", safetyNet: true}
	kindSound   = &kind{name: "sound", deviceClass: "sound", label: "Sound", safetyNet: true}
	kindTamper  = &kind{name: "tamper", deviceClass: "tamper", label: "Tamper", safetyNet: true}
	kindDoor    = &kind{name: "door", deviceClass: "door", label: "Door"}
	kindProblem = &kind{name: "problem", deviceClass: "problem", label: "Problem"}
	kindBattery = &kind{name: "battery", deviceClass: "battery", label: "Battery low"}
	kindPower   = &kind{name: "power", deviceClass: "power", label: "Mains power", inverted: true}
)

// kinds maps the event vocabulary (sink.Event.Type) to stateful kinds;
// types not listed (test, other) have no state.
var kinds = map[string]*kind{
	"motion": kindMotion, "line_crossing": kindMotion, "intrusion": kindMotion,
	"sound":    kindSound,
	"tamper":   kindTamper,
	"door":     kindDoor,
	"io_alarm": kindProblem, "video_loss": kindProblem, "disk_failure": kindProblem, "disk_full": kindProblem,
	"volume_degraded": kindProblem, "toner_low": kindProblem, "paper_jam": kindProblem, "printer_error": kindProblem,
	"battery_low": kindBattery,
	"on_battery":  kindPower, "power_restored": kindPower,
}

// HasOffDelay tells whether the binary sensor of eventType turns OFF by
// itself after Config.OffDelay (the safety net), which must then be longer
// than the type's auto-stop so a coalesced storm never flickers OFF.
func HasOffDelay(eventType string) bool {
	k := kinds[eventType]
	return k != nil && k.safetyNet
}

// cameraTypes are the event types only a camera (or NVR) sends: a device
// that sent one gets image entities even before its first snapshot.
var cameraTypes = []string{"motion", "line_crossing", "intrusion", "tamper", "video_loss", "sound"}

// vocabulary is the closed set of event types (sink/classify); anything
// else is announced and published as "other".
var vocabulary = []string{"motion", "line_crossing", "intrusion", "tamper", "video_loss", "io_alarm", "sound",
	"disk_failure", "disk_full", "volume_degraded", "on_battery", "power_restored", "battery_low", "toner_low",
	"paper_jam", "printer_error", "door", "test", "other"}

// eventType is t if it is a word of the vocabulary, else "other".
func eventType(t string) string {
	if slices.Contains(vocabulary, t) {
		return t
	}
	return "other"
}

// Origin is the software the discovery messages name.
type Origin struct {
	Version    string
	SupportURL string
}

// names are the topics and ids of one instance, derived as TOPICS.md says.
type names struct {
	prefix, base, site string
	status             string // {base}/status, "" when the output has no availability topic
	alertTopic         func(device string) string
	perDeviceAvail     bool
}

// ID is the Home Assistant identifier of device: edgesink_[{site}_]{device}.
// It is the one sanitizer for Home Assistant ids and discovery topic
// levels, which allow only [a-zA-Z0-9_-]: a device name (sink.SafeName)
// may also hold '.', which becomes '_'.
func ID(site, device string) string {
	id := "edgesink_"
	if site != "" {
		id += site + "_"
	}
	return id + idLevel(device)
}

// HubID is the hub device's identifier, edgesink-hub[-{site}]: a hyphen
// where device ids have an underscore, so no device's name can take it.
func HubID(site string) string {
	if site == "" {
		return "edgesink-hub"
	}
	return "edgesink-hub-" + site
}

func idLevel(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

func (n names) stateTopic(device, kind string) string {
	return n.base + "/" + device + "/" + kind + "/state"
}
func (n names) eventTopic(device string) string { return n.base + "/" + device + "/event" }
func (n names) availTopic(device string) string { return n.base + "/" + device + "/availability" }
func (n names) statsTopic() string              { return n.base + "/stats" }
func (n names) snapshotTopic(device, channel string) string {
	if channel == "" {
		return n.base + "/" + device + "/snapshot"
	}
	return n.base + "/" + device + "/" + channel + "/snapshot"
}

// deviceConfigTopic is where device-based discovery is published.
func (n names) deviceConfigTopic(id string) string { return n.prefix + "/device/" + id + "/config" }

// componentConfigTopic is the per-component discovery topic of older Home
// Assistant installations: {prefix}/{platform}/{id}/{component}/config.
func (n names) componentConfigTopic(platform, id, component string) string {
	return n.prefix + "/" + platform + "/" + id + "/" + idLevel(component) + "/config"
}

// obj keeps discovery payloads in a stable key order when encoded (Go
// sorts map keys), so goldens compare byte for byte.
type obj = map[string]any

// component is one entity of a discovery payload.
type component struct {
	key string // unique within the device; the last part of unique_id
	cfg obj    // including "p"
}

// deviceComponents are the entities of one registered device.
func (n names) deviceComponents(d registry.Device, offDelay int, qos byte) []component {
	id := ID(n.site, d.Name)
	avail := n.availability(d.Name)
	add := func(list []component, key, platform, name string, cfg obj) []component {
		cfg["p"] = platform
		cfg["unique_id"] = id + "_" + idLevel(key)
		cfg["name"] = name
		cfg["qos"] = qos
		if avail != nil {
			cfg["availability"] = avail
			cfg["availability_mode"] = "all"
		}
		return append(list, component{key: idLevel(key), cfg: cfg})
	}
	var out []component
	types := []string{}
	for _, t := range d.EventTypes {
		if t = eventType(t); !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		types = append(types, "other")
	}
	slices.Sort(types)
	out = add(out, "event", "event", "Alert", obj{
		"state_topic": n.eventTopic(d.Name),
		"event_types": types,
	})
	var seen []*kind
	for _, t := range types {
		k := kinds[t]
		if k == nil || slices.Contains(seen, k) {
			continue
		}
		seen = append(seen, k)
	}
	slices.SortFunc(seen, func(a, b *kind) int { return strings.Compare(a.name, b.name) })
	for _, k := range seen {
		cfg := obj{"device_class": k.deviceClass, "state_topic": n.stateTopic(d.Name, k.name)}
		if k.safetyNet && offDelay > 0 {
			cfg["off_delay"] = offDelay
		}
		out = add(out, k.name, "binary_sensor", k.label, cfg)
	}
	alert := n.alertTopic(d.Name)
	out = add(out, "last_alert", "sensor", "Last alert", obj{
		"state_topic":           alert,
		"value_template":        "{{ value_json.subject[:255] }}",
		"json_attributes_topic": alert,
		"icon":                  "mdi:email-alert",
	})
	if d.Snapshots || slices.ContainsFunc(types, func(t string) bool { return slices.Contains(cameraTypes, t) }) {
		out = add(out, "snapshot", "image", "Snapshot", obj{
			"image_topic": n.snapshotTopic(d.Name, ""), "content_type": "image/jpeg",
		})
		for _, ch := range d.Channels {
			out = add(out, "snapshot_"+ch, "image", "Snapshot "+ch, obj{
				"image_topic": n.snapshotTopic(d.Name, ch), "content_type": "image/jpeg",
			})
		}
	}
	return out
}

// availability is the list an entity of device is available by: the
// instance's status and, with silence detection, the device's own.
func (n names) availability(device string) []obj {
	var out []obj
	if n.status != "" {
		out = append(out, obj{"topic": n.status})
	}
	if n.perDeviceAvail && device != "" {
		out = append(out, obj{"topic": n.availTopic(device)})
	}
	return out
}

// hubComponents are the hub device's entities: whether the instance is
// online, and the spool's figures on {base}/stats.
func (n names) hubComponents(qos byte) []component {
	id := HubID(n.site)
	var out []component
	add := func(key, platform, name string, cfg obj) {
		cfg["p"] = platform
		cfg["unique_id"] = id + "_" + key
		cfg["name"] = name
		cfg["qos"] = qos
		cfg["entity_category"] = "diagnostic"
		out = append(out, component{key: key, cfg: cfg})
	}
	if n.status != "" {
		add("connectivity", "binary_sensor", "Connected", obj{
			"device_class": "connectivity", "state_topic": n.status, "payload_on": "online", "payload_off": "offline",
		})
	}
	stat := func(key, name, field, stateClass, icon string) {
		cfg := obj{"state_topic": n.statsTopic(), "value_template": "{{ value_json." + field + " }}",
			"state_class": stateClass, "unit_of_measurement": "alerts", "icon": icon}
		if n.status != "" {
			cfg["availability"] = []obj{{"topic": n.status}}
		}
		add(key, "sensor", name, cfg)
	}
	stat("queued", "Queued alerts", "queued", "measurement", "mdi:tray-full")
	stat("dead_letters", "Dead letters", "dead", "measurement", "mdi:email-remove")
	stat("alerts", "Alerts received", "alerts", "total_increasing", "mdi:counter")
	return out
}

// message is one discovery message: topic and payload.
type message struct {
	topic   string
	payload []byte
}

// deviceBlock is the "dev" object of a device.
func (n names) deviceBlock(d registry.Device, version string) obj {
	dev := obj{"ids": []string{ID(n.site, d.Name)}, "name": d.Name, "via_device": HubID(n.site)}
	if d.Template != "" && d.Template != "none" {
		dev["mdl"] = d.Template
	}
	return dev
}

func (n names) hubBlock(version string) obj {
	name := "edgesink"
	if n.site != "" {
		name += " " + n.site
	}
	return obj{"ids": []string{HubID(n.site)}, "name": name, "mf": "edgesink", "mdl": "mail to MQTT bridge", "sw": version}
}

func origin(o Origin) obj {
	out := obj{"name": "edgesink", "sw": o.Version}
	if o.SupportURL != "" {
		out["url"] = o.SupportURL
	}
	return out
}

// discovery is the discovery messages announcing one device (dev, its
// components): one message on the device topic, or one per component on
// the per-component topics when perComponent.
func (n names) discovery(id string, dev obj, o Origin, comps []component, perComponent bool) []message {
	if !perComponent {
		cmps := obj{}
		for _, c := range comps {
			cmps[c.key] = c.cfg
		}
		payload, _ := json.Marshal(obj{"dev": dev, "o": origin(o), "cmps": cmps})
		return []message{{topic: n.deviceConfigTopic(id), payload: payload}}
	}
	var out []message
	for _, c := range comps {
		cfg := obj{}
		for k, v := range c.cfg {
			if k != "p" {
				cfg[k] = v
			}
		}
		cfg["dev"], cfg["o"] = dev, origin(o)
		payload, _ := json.Marshal(cfg)
		out = append(out, message{topic: n.componentConfigTopic(c.cfg["p"].(string), id, c.key), payload: payload})
	}
	return out
}

// removal is the empty retained messages that delete what discovery
// announced.
func removal(msgs []message) []message {
	out := make([]message, len(msgs))
	for i, m := range msgs {
		out[i] = message{topic: m.topic}
	}
	return out
}
