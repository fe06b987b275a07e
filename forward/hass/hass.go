// Package hass makes every device that mails edgesink appear in Home
// Assistant, with no YAML: MQTT discovery (one Home Assistant device per
// sending device, below an edgesink hub device), an event entity, a binary
// sensor per stateful kind, the last alert as a sensor, and the latest
// snapshot as an image.
//
// It is a part of the MQTT output, not an output of its own: Output wraps
// the MQTT publisher, keeps its name, and publishes Home Assistant's
// messages on the same connection, after the alert. So a route that sends
// an alert nowhere on MQTT also sends Home Assistant nothing. The alert's
// delivery is what the queue waits for; Home Assistant's messages are
// best effort (logged when they fail, sent again with the alert when it is
// retried).
//
// The contract with Home Assistant: discovery messages are retained, sent
// when a device is new or grows (forward/registry) and again when Home
// Assistant announces itself ({prefix}/status online, after a random delay)
// or the connection is made; a device deleted in Home Assistant (an empty
// retained config) is forgotten, not announced again until it mails. Names
// on the wire are those of TOPICS.md.
package hass

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/registry"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Defaults.
const (
	DefaultDiscoveryPrefix = "homeassistant"
	DefaultOffDelay        = 5 * time.Minute
	DefaultBirthDelay      = 5 * time.Second
	DefaultStatsInterval   = time.Minute
	// SupportURL is the origin's support address in discovery messages.
	SupportURL = "https://github.com/edgesink/edgesink"
	// maxState is the longest state Home Assistant keeps (it drops longer).
	maxState = 255
	// publishTimeout bounds one wait for the broker outside an alert's
	// delivery (announcing, statistics).
	publishTimeout = 10 * time.Second
)

// Config is the homeassistant section of the configuration file, plus the
// MQTT output's names (cmd fills those in).
type Config struct {
	Enabled         bool   `yaml:"enabled"`          // default true whenever MQTT is an output
	DiscoveryPrefix string `yaml:"discovery_prefix"` // default homeassistant
	// DeviceDiscovery publishes one message per device on
	// {prefix}/device/{id}/config (Home Assistant 2024.11 and later); false
	// publishes one per entity on {prefix}/{platform}/{id}/{entity}/config.
	DeviceDiscovery bool `yaml:"device_discovery"`
	// OffDelay turns a motion, sound or tamper sensor OFF this long after
	// its last ON if no stop came: a safety net, longer than the event's
	// auto-stop (coalesce.auto_stop). 0 takes the default.
	OffDelay time.Duration `yaml:"off_delay"`
	// AvailabilitySilence, when set, marks a device unavailable after this
	// long without a mail ({base}/{device}/availability). 0: off.
	AvailabilitySilence time.Duration `yaml:"availability_silence"`
	// BirthDelay is the longest random wait before announcing again when
	// Home Assistant comes online, so many bridges do not answer at once.
	BirthDelay    time.Duration `yaml:"birth_delay"`
	StatsInterval time.Duration `yaml:"stats_interval"` // how often the hub's figures are published, after alerts went out

	Base       string                     `yaml:"-"`          // the MQTT output's {base}
	Site       string                     `yaml:"-"`          //
	Status     string                     `yaml:"-"`          // the output's availability topic, "" if none
	QoS        byte                       `yaml:"-"`          // the output's QoS
	AlertTopic func(device string) string `yaml:"-" json:"-"` // the alert topic of a device's alerts
	Origin     Origin                     `yaml:"-" json:"-"` //
}

// DefaultConfig is what edgesink runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{Enabled: true, DiscoveryPrefix: DefaultDiscoveryPrefix, DeviceDiscovery: true,
		OffDelay: DefaultOffDelay, BirthDelay: DefaultBirthDelay, StatsInterval: DefaultStatsInterval}
}

// Validate reports the first setting that cannot work (errors name the key).
func (c Config) Validate() error {
	p := c.DiscoveryPrefix
	if p == "" || strings.ContainsAny(p, "+#\x00") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") ||
		strings.Contains(p, "//") || strings.HasPrefix(p, "$") {
		return config.Bad("discovery_prefix", "%q: want a topic such as homeassistant", p)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"off_delay", c.OffDelay}, {"availability_silence", c.AvailabilitySilence}, {"birth_delay", c.BirthDelay}, {"stats_interval", c.StatsInterval}} {
		if d.v < 0 {
			return config.Bad(d.key, "must not be negative")
		}
	}
	if c.OffDelay > 0 && c.OffDelay < time.Second {
		return config.Bad("off_delay", "%s: Home Assistant counts it in whole seconds", c.OffDelay)
	}
	return nil
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.DiscoveryPrefix == "" {
		c.DiscoveryPrefix = d.DiscoveryPrefix
	}
	if c.OffDelay == 0 {
		c.OffDelay = d.OffDelay
	}
	if c.BirthDelay == 0 {
		c.BirthDelay = d.BirthDelay
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = d.StatsInterval
	}
	if c.QoS == 0 {
		c.QoS = 1
	}
	if c.Base == "" {
		return c, errors.New("hass: no base topic")
	}
	if c.AlertTopic == nil {
		base := c.Base
		c.AlertTopic = func(device string) string { return base + "/" + device + "/alert" }
	}
	return c, c.Validate()
}

// Broker is what Output needs of the MQTT output (forward/mqtt.Publisher):
// alerts, other messages on the same connection, subscriptions and a word
// when a connection is made.
type Broker interface {
	forward.Forwarder
	forward.Starter
	// Send publishes and returns at once; the function waits for the ack.
	Send(topic string, payload []byte, retain bool) func(context.Context) error
	// Subscribe subscribes on every connection; handler must not block.
	Subscribe(filter string, handler func(topic string, payload []byte))
	// OnConnect calls f after every connection; f must not block.
	OnConnect(f func())
	// Connected tells whether a connection is up now.
	Connected() bool
}

// Output is the MQTT output with Home Assistant's messages added.
type Output struct {
	cfg   Config
	names names
	mq    Broker
	reg   *registry.Registry
	snaps *Snapshots
	log   *slog.Logger

	stats  atomic.Pointer[func() (queued, dead int)]
	alerts atomic.Int64
	// dirty: an alert went out since the figures were last published. The
	// figures are read (a directory read for a disk spool) only then, so
	// an idle edgesink does no I/O for them.
	dirty atomic.Bool

	mu       sync.Mutex
	active   map[string]map[*kind]map[string]bool // device → kind → started "type/channel"
	timers   map[string]*time.Timer               // device/kind → safety net
	lastSeen map[string]time.Time                 // monotonic; only with AvailabilitySilence
	offline  map[string]bool
	fullLog  bool // ErrFull logged once

	kick      chan kick
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type kick struct {
	what  int // kickConnected, kickBirth, kickDeleted
	topic string
}

const (
	kickConnected = iota
	kickBirth
	kickDeleted
)

var (
	_ forward.Forwarder = (*Output)(nil)
	_ forward.Starter   = (*Output)(nil)
)

// New wraps mq. reg is the device registry; snaps may be nil (no
// snapshots). It subscribes to Home Assistant's birth message and to
// deletions under the discovery prefix, and starts its one goroutine
// (announcing, statistics, silence); Close stops it.
func New(cfg Config, mq Broker, reg *registry.Registry, snaps *Snapshots, log *slog.Logger) (*Output, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("hass: %w", err)
	}
	o := &Output{cfg: cfg, mq: mq, reg: reg, snaps: snaps, log: log.With("component", "homeassistant"),
		names: names{prefix: cfg.DiscoveryPrefix, base: cfg.Base, site: cfg.Site, status: cfg.Status,
			alertTopic: cfg.AlertTopic, perDeviceAvail: cfg.AvailabilitySilence > 0},
		active: map[string]map[*kind]map[string]bool{}, timers: map[string]*time.Timer{},
		lastSeen: map[string]time.Time{}, offline: map[string]bool{},
		kick: make(chan kick, 64), stop: make(chan struct{}), done: make(chan struct{})}
	if o.names.perDeviceAvail {
		now := time.Now()
		for _, d := range reg.List() {
			o.lastSeen[d.Name] = now
		}
	}
	mq.Subscribe(cfg.DiscoveryPrefix+"/status", func(_ string, payload []byte) {
		if string(payload) == "online" {
			o.signal(kick{what: kickBirth})
		}
	})
	deletions := cfg.DiscoveryPrefix + "/device/+/config"
	if !cfg.DeviceDiscovery {
		deletions = cfg.DiscoveryPrefix + "/+/+/+/config"
	}
	mq.Subscribe(deletions, func(topic string, payload []byte) {
		if len(payload) == 0 {
			o.signal(kick{what: kickDeleted, topic: topic})
		}
	})
	mq.OnConnect(func() { o.signal(kick{what: kickConnected}) })
	o.signal(kick{what: kickConnected}) // in case the connection was made before OnConnect
	go o.run()
	return o, nil
}

// SetStats gives the hub's figures their source (the spool's Stats).
func (o *Output) SetStats(f func() (queued, dead int)) { o.stats.Store(&f) }

// Registry is the device registry Output announces from.
func (o *Output) Registry() *registry.Registry { return o.reg }

func (o *Output) signal(k kick) {
	select {
	case o.kick <- k:
	default: // a burst: the worker is busy announcing anyway
	}
}

// Name is the MQTT output's: routes name one output.
func (o *Output) Name() string { return o.mq.Name() }

// Forward publishes a and Home Assistant's messages, and waits for the
// broker to confirm the alert.
func (o *Output) Forward(ctx context.Context, a *sink.Alert) error {
	waitc := make(chan func(context.Context) error, 1)
	go func() { waitc <- o.Start(ctx, a) }()
	select {
	case wait := <-waitc:
		return wait(ctx)
	case <-ctx.Done():
		return fmt.Errorf("hass: publish %s: not sent: %w", a.ID, ctx.Err())
	}
}

// Start hands a to the MQTT output, then Home Assistant's messages for it;
// the function returned waits for the alert's acknowledgement (Forward's
// error contract) and logs what became of the others.
func (o *Output) Start(ctx context.Context, a *sink.Alert) func(context.Context) error {
	return o.start(ctx, a, o.mq)
}

// start is Start with the alert itself published by alert: the MQTT
// output, or the MQTT output on a routing rule's topic.
func (o *Output) start(ctx context.Context, a *sink.Alert, alert forward.Starter) func(context.Context) error {
	waitAlert := alert.Start(ctx, a)
	if !o.mq.Connected() {
		return waitAlert // it fails: the alert is retried, Home Assistant's updates with it
	}
	var waits []func(context.Context) error
	var after []func()
	for _, m := range o.updates(a, &after) {
		waits = append(waits, o.mq.Send(m.topic, m.payload, m.retain))
	}
	return func(ctx context.Context) error {
		err := waitAlert(ctx)
		for _, w := range waits {
			if herr := w(ctx); herr != nil && err == nil {
				o.log.Warn("Home Assistant update not confirmed", "id", a.ID, "device", a.Device, "err", herr)
				break
			}
		}
		if err == nil {
			for _, f := range after {
				f()
			}
		}
		o.dirty.Store(true)
		return err
	}
}

// With implements forward.Templated: the alert goes out on a routing rule's
// topic (the MQTT output's own With), Home Assistant's messages as always.
func (o *Output) With(tmpl string) (forward.Forwarder, error) {
	t, ok := o.mq.(forward.Templated)
	if !ok {
		return nil, fmt.Errorf("hass: the MQTT output cannot publish on a rule's topic %q", tmpl)
	}
	f, err := t.With(tmpl)
	if err != nil {
		return nil, err
	}
	s, ok := f.(forward.Starter)
	if !ok {
		return nil, fmt.Errorf("hass: the MQTT output on a rule's topic %q cannot start a publish", tmpl)
	}
	return routed{o: o, alert: s}, nil
}

// routed is the Home Assistant output whose alert goes on a rule's topic.
type routed struct {
	o     *Output
	alert forward.Starter
}

var (
	_ forward.Templated = (*Output)(nil)
	_ forward.Starter   = routed{}
)

func (r routed) Name() string { return r.o.Name() }

func (r routed) Forward(ctx context.Context, a *sink.Alert) error {
	return r.Start(ctx, a)(ctx)
}

func (r routed) Start(ctx context.Context, a *sink.Alert) func(context.Context) error {
	return r.o.start(ctx, a, r.alert)
}

// State is the MQTT output's connection state (forward.Stater), which the
// status page and /readyz read.
func (o *Output) State() forward.State {
	if s, ok := o.mq.(forward.Stater); ok {
		return s.State()
	}
	return forward.State{Up: o.mq.Connected()}
}

var _ forward.Stater = (*Output)(nil)

// outMsg is one message to publish.
type outMsg struct {
	topic   string
	payload []byte
	retain  bool
}

// eventPayload is what the event entity receives.
type eventPayload struct {
	EventType string `json:"event_type"`
	State     string `json:"state"`
	Subject   string `json:"subject"`
	Channel   string `json:"channel,omitempty"`
	Camera    string `json:"camera,omitempty"`
	Detail    string `json:"detail,omitempty"`
	Count     int    `json:"count"`
	Time      string `json:"time"`
	ID        string `json:"id"`
}

// updates is Home Assistant's messages for a, in order: discovery when the
// device is new or grew, its availability, the event, the state of its
// kind, the snapshot. after runs once they are acknowledged.
func (o *Output) updates(a *sink.Alert, after *[]func()) []outMsg {
	device := a.Device
	if sink.SafeName(device) != device || device == "" {
		device = sink.DeviceName("", device, nil)
	}
	ev := sink.Event{Type: "other", State: "none"}
	if a.Event != nil {
		ev = *a.Event
	}
	typ := eventType(ev.Type)
	channel := sink.SafeName(ev.Channel)
	sh := o.snaps.forAlert(a)
	if sh != nil {
		// Kept for a retry until the alert is delivered.
		*after = append(*after, func() { o.snaps.release(sh.sha, true) })
	}
	o.alerts.Add(1)

	change, err := o.reg.Seen(device, registry.Sighting{Template: ev.Template, EventType: typ, Channel: channel, Snapshot: sh != nil})
	if err != nil {
		o.mu.Lock()
		logIt := !errors.Is(err, registry.ErrFull) || !o.fullLog
		o.fullLog = o.fullLog || errors.Is(err, registry.ErrFull)
		o.mu.Unlock()
		if logIt {
			o.log.Warn("device not registered: Home Assistant does not hear of it", "device", device, "err", err)
		}
		if _, known := o.reg.Get(device); !known {
			return nil
		}
	}
	var out []outMsg
	if change != registry.Known {
		if d, ok := o.reg.Get(device); ok {
			for _, m := range o.deviceDiscovery(d) {
				out = append(out, outMsg{m.topic, m.payload, true})
			}
			o.log.Info("announced device to Home Assistant", "device", device, "new", change == registry.New, "event_types", d.EventTypes)
		}
	}
	if o.names.perDeviceAvail {
		o.mu.Lock()
		_, known := o.lastSeen[device]
		wasOff := o.offline[device] || !known || change == registry.New
		o.lastSeen[device] = time.Now()
		delete(o.offline, device)
		o.mu.Unlock()
		if wasOff {
			out = append(out, outMsg{o.names.availTopic(device), []byte("online"), true})
		}
	}
	if ev.State != "stop" {
		when := a.ReceivedAt
		if !a.LastAt.IsZero() {
			when = a.LastAt
		}
		p, _ := json.Marshal(eventPayload{EventType: typ, State: ev.State, Subject: cut(a.Subject, maxState),
			Channel: channel, Camera: cut(ev.Camera, maxState), Detail: cut(ev.Detail, maxState),
			Count: max(a.Count, 1), Time: when.UTC().Format(time.RFC3339), ID: a.ID})
		out = append(out, outMsg{o.names.eventTopic(device), p, false})
	}
	if k := kinds[typ]; k != nil {
		if m, ok := o.stateChange(device, k, typ, channel, ev.State); ok {
			out = append(out, m)
		}
	}
	if sh != nil {
		topics := []string{o.names.snapshotTopic(device, "")}
		files := []string{o.snaps.latestFile(device, "")}
		if channel != "" {
			topics = append(topics, o.names.snapshotTopic(device, channel))
			files = append(files, o.snaps.latestFile(device, channel))
		}
		for _, t := range topics {
			out = append(out, outMsg{t, sh.data, true})
		}
		for _, t := range o.snaps.published(sh, device, topics, files) {
			out = append(out, outMsg{t, nil, true})
		}
	}
	return out
}

// cut shortens s to at most n bytes of whole UTF-8 characters.
func cut(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// stateChange applies one event to its kind's state and returns the state
// message: ON at start, OFF at stop (inverted for power), retained.
func (o *Output) stateChange(device string, k *kind, typ, channel, state string) (outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	kinds := o.active[device]
	if kinds == nil {
		kinds = map[*kind]map[string]bool{}
		o.active[device] = kinds
	}
	started := kinds[k]
	if started == nil {
		started = map[string]bool{}
		kinds[k] = started
	}
	key := typ + "/" + channel
	switch {
	case typ == "power_restored":
		clear(started)
	case state == "start":
		if len(started) < 2*registry.MaxChannels {
			started[key] = true
		}
	case state == "stop":
		delete(started, key)
	default:
		return outMsg{}, false
	}
	on := len(started) > 0
	o.safetyNetLocked(device, k, on)
	if k.inverted {
		on = !on
	}
	return outMsg{o.names.stateTopic(device, k.name), []byte(onOff(on)), true}, true
}

// safetyNetLocked (re)arms the timer that turns a safety-net kind OFF
// OffDelay after its last start, or disarms it. No timer exists unless a
// kind is ON.
func (o *Output) safetyNetLocked(device string, k *kind, on bool) {
	if !k.safetyNet {
		return
	}
	key := device + "/" + k.name
	if t := o.timers[key]; t != nil {
		t.Stop()
		delete(o.timers, key)
	}
	if !on {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(o.cfg.OffDelay, func() {
		o.mu.Lock()
		if o.timers[key] != t {
			o.mu.Unlock()
			return
		}
		delete(o.timers, key)
		if s := o.active[device][k]; s != nil {
			clear(s)
		}
		o.mu.Unlock()
		o.log.Info("no stop came: sensor turned off by its safety net", "device", device, "kind", k.name, "off_delay", o.cfg.OffDelay)
		o.publishNow(outMsg{o.names.stateTopic(device, k.name), []byte("OFF"), true})
	})
	o.timers[key] = t
}

func onOff(on bool) string {
	if on {
		return "ON"
	}
	return "OFF"
}

// publishNow publishes msgs outside an alert's delivery and waits for each
// (bounded); failures are logged: what is retained is sent again at the
// next connection or birth message.
func (o *Output) publishNow(msgs ...outMsg) {
	waits := make([]func(context.Context) error, 0, len(msgs))
	for _, m := range msgs {
		waits = append(waits, o.mq.Send(m.topic, m.payload, m.retain))
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	for i, w := range waits {
		if err := w(ctx); err != nil {
			o.log.Debug("Home Assistant message not sent", "topic", msgs[i].topic, "err", err)
			return
		}
	}
}

// deviceDiscovery is the discovery messages of d.
func (o *Output) deviceDiscovery(d registry.Device) []message {
	comps := o.names.deviceComponents(d, int(o.cfg.OffDelay/time.Second), o.cfg.QoS)
	return o.names.discovery(ID(o.cfg.Site, d.Name), o.names.deviceBlock(d, o.cfg.Origin.Version), o.cfg.Origin, comps, !o.cfg.DeviceDiscovery)
}

// hubDiscovery is the discovery messages of the hub device.
func (o *Output) hubDiscovery() []message {
	return o.names.discovery(HubID(o.cfg.Site), o.names.hubBlock(o.cfg.Origin.Version), o.cfg.Origin,
		o.names.hubComponents(o.cfg.QoS), !o.cfg.DeviceDiscovery)
}

// announce publishes the hub's and every registered device's discovery,
// and with withState the statistics and the latest snapshots kept on disk
// (a broker that restarted lost them).
func (o *Output) announce(withState bool) {
	var msgs []outMsg
	for _, m := range o.hubDiscovery() {
		msgs = append(msgs, outMsg{m.topic, m.payload, true})
	}
	devices := o.reg.List()
	for _, d := range devices {
		for _, m := range o.deviceDiscovery(d) {
			msgs = append(msgs, outMsg{m.topic, m.payload, true})
		}
	}
	if withState {
		m, _ := o.statsMsg()
		msgs = append(msgs, m)
		registered := func(name string) bool { _, ok := o.reg.Get(name); return ok }
		for _, k := range o.snaps.latest(registered) {
			t := o.names.snapshotTopic(k.device, k.channel)
			msgs = append(msgs, outMsg{t, k.data, true})
			for _, c := range o.snaps.published(&shot{data: k.data}, k.device, []string{t}, []string{""}) {
				msgs = append(msgs, outMsg{c, nil, true})
			}
		}
	}
	o.publishNow(msgs...)
	o.log.Debug("announced to Home Assistant", "devices", len(devices))
}

// statsMsg is the hub's figures, retained on {base}/stats.
func (o *Output) statsMsg() (m outMsg, queued int) {
	var dead int
	if f := o.stats.Load(); f != nil {
		queued, dead = (*f)()
	}
	p, _ := json.Marshal(map[string]int64{"queued": int64(queued), "dead": int64(dead), "alerts": o.alerts.Load()})
	return outMsg{o.names.statsTopic(), p, true}, queued
}

// Forget removes device from Home Assistant (empty retained discovery,
// state and snapshot topics cleared) and from the registry. It tells
// whether the device was known.
func (o *Output) Forget(device string) (bool, error) {
	d, ok := o.reg.Get(device)
	if !ok {
		return false, nil
	}
	// The registry first: the empty config comes back on the deletion
	// subscription, and must find the device gone.
	if _, err := o.reg.Forget(device); err != nil {
		return true, err
	}
	o.publishNow(o.clearing(d, true)...)
	o.log.Info("device forgotten", "device", device)
	return true, nil
}

// clearing is what removes d's retained messages, its discovery with them
// when withConfig (Home Assistant already deleted it otherwise), and drops
// what Output keeps of it.
func (o *Output) clearing(d registry.Device, withConfig bool) []outMsg {
	var msgs []outMsg
	if withConfig {
		for _, m := range removal(o.deviceDiscovery(d)) {
			msgs = append(msgs, outMsg{m.topic, nil, true})
		}
	}
	o.mu.Lock()
	for k := range o.active[d.Name] {
		msgs = append(msgs, outMsg{o.names.stateTopic(d.Name, k.name), nil, true})
	}
	delete(o.active, d.Name)
	for key, t := range o.timers {
		if strings.HasPrefix(key, d.Name+"/") {
			t.Stop()
			delete(o.timers, key)
		}
	}
	delete(o.lastSeen, d.Name)
	delete(o.offline, d.Name)
	o.mu.Unlock()
	for _, k := range uniqueKinds(d.EventTypes) {
		if !slices.ContainsFunc(msgs, func(m outMsg) bool { return m.topic == o.names.stateTopic(d.Name, k.name) }) {
			msgs = append(msgs, outMsg{o.names.stateTopic(d.Name, k.name), nil, true})
		}
	}
	for _, t := range o.snaps.forget(d.Name) {
		msgs = append(msgs, outMsg{t, nil, true})
	}
	if o.names.perDeviceAvail {
		msgs = append(msgs, outMsg{o.names.availTopic(d.Name), nil, true})
	}
	return msgs
}

func uniqueKinds(types []string) []*kind {
	var out []*kind
	for _, t := range types {
		if k := kinds[t]; k != nil && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// deleted handles an empty retained config under the discovery prefix:
// Home Assistant deleted a device (or edgesink itself forgot one).
func (o *Output) deleted(topic string) {
	levels := strings.Split(strings.TrimPrefix(topic, o.cfg.DiscoveryPrefix+"/"), "/")
	if len(levels) < 3 {
		return
	}
	id := levels[1] // device/{id}/config or {platform}/{id}/{entity}/config
	for _, d := range o.reg.List() {
		if ID(o.cfg.Site, d.Name) != id {
			continue
		}
		o.publishNow(o.clearing(d, false)...)
		if _, err := o.reg.Forget(d.Name); err != nil {
			o.log.Warn("device deleted in Home Assistant, but not from the registry", "device", d.Name, "err", err)
			return
		}
		o.log.Info("device deleted in Home Assistant: forgotten until it mails again", "device", d.Name)
		return
	}
}

// run is Output's one goroutine: it announces on connection and on Home
// Assistant's birth message, publishes the hub's figures, and marks silent
// devices offline. Close stops it.
func (o *Output) run() {
	defer close(o.done)
	defer func() {
		if r := recover(); r != nil {
			o.log.Error("Home Assistant worker panicked", "panic", r)
		}
	}()
	stats := time.NewTicker(o.cfg.StatsInterval)
	defer stats.Stop()
	var silence <-chan time.Time // nil unless silence detection is on: no timer at all
	if o.cfg.AvailabilitySilence > 0 {
		t := time.NewTicker(max(min(o.cfg.AvailabilitySilence/4, time.Minute), 10*time.Millisecond))
		defer t.Stop()
		silence = t.C
	}
	birth := time.NewTimer(time.Hour)
	birth.Stop()
	defer birth.Stop()
	lastStats := ""
	for {
		select {
		case <-o.stop:
			return
		case k := <-o.kick:
			switch k.what {
			case kickConnected:
				o.announce(true)
			case kickBirth:
				birth.Reset(rand.N(o.cfg.BirthDelay + 1))
			case kickDeleted:
				o.deleted(k.topic)
			}
		case <-birth.C:
			o.log.Info("Home Assistant came online: announcing the devices again")
			o.announce(false)
		case <-stats.C:
			if !o.dirty.Swap(false) {
				continue
			}
			m, queued := o.statsMsg()
			if string(m.payload) != lastStats {
				lastStats = string(m.payload)
				o.publishNow(m)
			}
			if queued > 0 { // look again until the queue is empty
				o.dirty.Store(true)
			}
		case <-silence:
			o.checkSilence()
		}
	}
}

// checkSilence marks devices offline after AvailabilitySilence without a
// mail (monotonic time: a clock jump at the first NTP sync changes
// nothing).
func (o *Output) checkSilence() {
	var msgs []outMsg
	o.mu.Lock()
	for device, seen := range o.lastSeen {
		if !o.offline[device] && time.Since(seen) > o.cfg.AvailabilitySilence {
			o.offline[device] = true
			msgs = append(msgs, outMsg{o.names.availTopic(device), []byte("offline"), true})
		}
	}
	o.mu.Unlock()
	if len(msgs) > 0 {
		o.publishNow(msgs...)
	}
}

// Close stops the worker and the safety-net timers. The MQTT output is
// closed by its owner. Safe to call twice.
func (o *Output) Close() error {
	o.closeOnce.Do(func() {
		close(o.stop)
		<-o.done
		o.mu.Lock()
		for k, t := range o.timers {
			t.Stop()
			delete(o.timers, k)
		}
		o.mu.Unlock()
	})
	return nil
}
