// Package mqtt publishes alerts to an MQTT broker. It is the only package
// that imports the paho client.
//
// An alert counts as delivered when the broker acknowledged it (PUBACK at
// QoS 1, PUBCOMP at QoS 2). While the broker is unreachable Forward fails at
// once with a temporary error, so the sink tells the device to retry instead
// of letting alerts pile up in memory.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Defaults for Config fields left empty. The names on the wire follow
// TOPICS.md: {base} is BaseTopic, else DefaultBaseTopic, or
// DefaultBaseTopic/{site} when a site is set; the status topic is
// {base}/status and the client id edgesink-<hostname>[-<site>].
const (
	DefaultTopic          = "{base}/{device}/alert" // {base} is filled in before parsing
	DefaultBaseTopic      = "edgesink"
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultMaxReconnect   = 30 * time.Second
)

// SitePlaceholder in mqtt.topic is this instance's site (TOPICS.md), so
// topics set by hand keep two sites' cam1 apart: sites/{site}/{device}.
const SitePlaceholder = "{site}"

// ErrNotConnected is returned (marked temporary) while the broker is down.
var ErrNotConnected = errors.New("mqtt: not connected to broker")

// Config says where and how to publish. The yaml names are the keys of the
// configuration file's mqtt section; the broker, the site and TLS come from
// elsewhere in the file (cmd/edgesink resolves them).
type Config struct {
	Broker            string        `yaml:"-"`                      // tcp://host:port, ssl://host:port, ws://...
	Site              string        `yaml:"-"`                      // this instance's site (CheckSite), "" for none
	BaseTopic         string        `yaml:"base_topic"`             // {base}; default DefaultBaseTopic[/Site]
	ClientID          string        `yaml:"client_id"`              // default edgesink-<hostname>[-<site>]
	Username          string        `yaml:"username"`               // empty: no login
	Password          string        `yaml:"password"`               //
	TLS               *tls.Config   `yaml:"-"`                      // used for ssl://, tls://, mqtts:// and wss:// brokers
	Topic             string        `yaml:"topic"`                  // template, default DefaultTopic: edgesink[/<site>]/{device}/alert
	QoS               byte          `yaml:"qos"`                    // 1 (default) or 2; 0 gives no delivery proof and is refused
	Retain            bool          `yaml:"retain"`                 // retain each alert on its topic
	KeepAlive         time.Duration `yaml:"keep_alive"`             //
	ConnectTimeout    time.Duration `yaml:"connect_timeout"`        //
	MaxReconnect      time.Duration `yaml:"max_reconnect_interval"` // longest wait between reconnect attempts
	AvailabilityTopic string        `yaml:"availability_topic"`     // "online"/"offline" (last will), retained; default {base}/status; "-" disables
}

// DefaultConfig is what edgesink publishes with unless told otherwise; the
// topics and client id follow from the site (withDefaults). The
// configuration file starts from it.
func DefaultConfig() Config {
	return Config{
		QoS:            1,
		KeepAlive:      DefaultKeepAlive,
		ConnectTimeout: DefaultConnectTimeout,
		MaxReconnect:   DefaultMaxReconnect,
	}
}

// Publisher is the MQTT output.
//
// It owns one goroutine, the connection loop: it connects a fresh paho
// client, waits until that connection is lost, then connects another after a
// backoff. paho's own auto-reconnect is off on purpose: it re-sends in-flight
// packets from an in-memory store on reconnect (racy in paho 1.5, see
// eclipse-paho/paho.mqtt.golang#703), and that store would be a hidden,
// volatile queue. Here a publish in flight when the connection drops fails,
// so the device is told to retry.
type Publisher struct {
	cfg   Config
	topic *forward.Template
	opts  paho.ClientOptions
	log   *slog.Logger

	mu        sync.Mutex
	client    paho.Client // nil while disconnected
	subs      []subscription
	onConnect []func()
	state     forward.StateKeeper

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	routed sync.Map // a routing rule's topic template -> routedTopic (route.go)
}

var (
	_ forward.Forwarder = (*Publisher)(nil)
	_ forward.Starter   = (*Publisher)(nil)
)

// New checks cfg and starts connecting in the background: a broker that is
// down at boot is not an error, edgesink answers 451 until it is up.
func New(cfg Config, log *slog.Logger) (*Publisher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	tmpl, err := ParseTopic(cfg.Topic)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, topic: tmpl.WithSite(cfg.Site), log: log.With("output", "mqtt", "broker", cfg.Broker),
		stop: make(chan struct{}), done: make(chan struct{})}

	opts := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetCleanSession(true).
		SetOrderMatters(false)
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	if dial := bufferedDial(cfg.Broker); dial != nil {
		opts.SetCustomOpenConnectionFn(dial)
	}
	if cfg.AvailabilityTopic != "" {
		opts.SetWill(cfg.AvailabilityTopic, "offline", 1, true)
	}
	p.opts = *opts
	p.state.Set(false, nil)
	go p.connectLoop()
	return p, nil
}

// ValidateConfig checks cfg and returns it with defaults filled in.
func ValidateConfig(cfg Config) (Config, error) { return cfg.withDefaults() }

// Validate reports the first setting that cannot work. Unlike New, it takes
// QoS 0 as asked for, and refuses it; other fields left empty take their
// defaults. Errors name the setting's yaml key (config.KeyError).
func (c Config) Validate() error {
	if c.QoS != 1 && c.QoS != 2 {
		return config.Bad("qos", "%d: want 1 or 2 (QoS 0 gives no proof of delivery)", c.QoS)
	}
	_, err := c.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	u, err := url.Parse(c.Broker)
	if err != nil || u.Host == "" {
		return c, config.Bad("broker", "%q: want scheme://host:port, e.g. tcp://192.168.1.10:1883", c.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return c, config.Bad("broker", "%q: unknown scheme %q (use tcp, ssl, ws or wss)", c.Broker, u.Scheme)
	}
	if err := CheckSite(c.Site); err != nil {
		return c, err
	}
	if c.BaseTopic == "" {
		c.BaseTopic = Base(c.Site)
	}
	if err := checkTopicLiteral(c.BaseTopic); err != nil || strings.Contains(c.BaseTopic, "{") {
		return c, config.Bad("base_topic", "%q: want a literal topic such as edgesink or home/edgesink", c.BaseTopic)
	}
	if c.ClientID == "" {
		host, _ := os.Hostname()
		c.ClientID = ClientID(host, c.Site)
	}
	if c.Topic == "" {
		c.Topic = strings.Replace(DefaultTopic, "{base}", c.BaseTopic, 1)
	}
	if strings.Contains(c.Topic, SitePlaceholder) {
		// The site is the instance's, not the alert's: filled in once.
		if c.Site == "" {
			return c, config.Bad("topic", "%q uses %s, but no site is set (top-level site)", c.Topic, SitePlaceholder)
		}
		c.Topic = strings.ReplaceAll(c.Topic, SitePlaceholder, c.Site)
	}
	if _, err := ParseTopic(c.Topic); err != nil {
		return c, config.Bad("topic", "%v", err)
	}
	switch c.QoS {
	case 0:
		c.QoS = 1
	case 1, 2:
	default:
		return c, config.Bad("qos", "%d: want 1 or 2", c.QoS)
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxReconnect == 0 {
		c.MaxReconnect = DefaultMaxReconnect
	}
	switch c.AvailabilityTopic {
	case "":
		c.AvailabilityTopic = c.BaseTopic + "/status"
	case "-":
		c.AvailabilityTopic = ""
	}
	if c.AvailabilityTopic != "" {
		if err := checkTopicLiteral(c.AvailabilityTopic); err != nil {
			return c, config.Bad("availability_topic", "%v", err)
		}
	}
	return c, nil
}

// Base is the default {base} of every topic: DefaultBaseTopic, or
// DefaultBaseTopic/site when a site is set.
func Base(site string) string {
	if site == "" {
		return DefaultBaseTopic
	}
	return DefaultBaseTopic + "/" + site
}

// ClientID is the default client id of the instance on host at site:
// edgesink-<hostname>[-<site>]. Two instances on one host need two sites,
// or the broker lets only one of them stay connected.
func ClientID(host, site string) string {
	id := "edgesink-" + sink.SafeName(host)
	if site != "" {
		id += "-" + site
	}
	return id
}

// maxSite bounds a site name; it is part of topics, client ids and Home
// Assistant ids.
const maxSite = 32

// CheckSite accepts "" (no site) or a name that is safe as one topic level,
// in a client id and in a Home Assistant id: 1 to 32 of a-z, 0-9, '_' and
// '-', starting with a letter or digit.
func CheckSite(site string) error {
	if site == "" {
		return nil
	}
	if len(site) > maxSite {
		return fmt.Errorf("site %q: longer than %d bytes", site, maxSite)
	}
	for i, r := range site {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (i > 0 && (r == '_' || r == '-'))
		if !ok {
			return fmt.Errorf("site %q: want lower-case letters, digits, '_' and '-' (starting with a letter or digit)", site)
		}
	}
	return nil
}

// Config is the publisher's configuration, defaults filled in.
func (p *Publisher) Config() Config { return p.cfg }

// Name implements forward.Forwarder.
func (p *Publisher) Name() string { return "mqtt" }

// Topic returns the topic a would be published on.
func (p *Publisher) Topic(a *sink.Alert) string { return topicOf(p.topic, a) }

func topicOf(t *forward.Template, a *sink.Alert) string {
	return SanitizeTopic(t.Execute(a, topicValue))
}

func (p *Publisher) current() paho.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client
}

// Forward publishes a as JSON and waits for the broker's acknowledgement.
func (p *Publisher) Forward(ctx context.Context, a *sink.Alert) error {
	return p.forward(ctx, a, p.topic)
}

func (p *Publisher) forward(ctx context.Context, a *sink.Alert, topic *forward.Template) error {
	// paho's Publish can itself block (up to its write timeout) when the
	// connection died unnoticed; run it aside so ctx always bounds Forward.
	waitc := make(chan func(context.Context) error, 1)
	go func() { waitc <- p.start(ctx, a, topic) }()
	select {
	case wait := <-waitc:
		return wait(ctx)
	case <-ctx.Done():
		return fmt.Errorf("mqtt: publish %s: not sent: %w", a.ID, ctx.Err())
	}
}

// Start hands a to the client and returns a function that waits for the
// broker's acknowledgement. Alerts started one after the other go out on
// the connection in that order.
func (p *Publisher) Start(ctx context.Context, a *sink.Alert) func(context.Context) error {
	return p.start(ctx, a, p.topic)
}

func (p *Publisher) start(ctx context.Context, a *sink.Alert, tmpl *forward.Template) func(context.Context) error {
	client := p.current()
	if client == nil {
		return failed(sink.MarkTemporary(ErrNotConnected))
	}
	payload, err := sink.JSON(ctx, a)
	if err != nil {
		return failed(fmt.Errorf("mqtt: encode alert %s: %w", a.ID, err))
	}
	topic := topicOf(tmpl, a)
	tok := client.Publish(topic, p.cfg.QoS, p.cfg.Retain, payload)
	return func(ctx context.Context) error {
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return fmt.Errorf("mqtt: publish %s to %s: no acknowledgement: %w", a.ID, topic, ctx.Err())
		}
		if err := tok.Error(); err != nil {
			// The connection dropped or the broker went away mid-flight.
			return sink.MarkTemporary(fmt.Errorf("mqtt: publish %s to %s: %w", a.ID, topic, err))
		}
		return nil
	}
}

func failed(err error) func(context.Context) error {
	return func(context.Context) error { return err }
}

// WaitConnected blocks until the client is connected or ctx ends.
func (p *Publisher) WaitConnected(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.current() == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("mqtt: connect to %s: %w", p.cfg.Broker, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Close stops reconnecting, announces "offline" and disconnects. It is safe
// to call twice.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		close(p.stop)
		<-p.done
	})
	return nil
}

// connectLoop is the Publisher's one goroutine; Close stops it.
func (p *Publisher) connectLoop() {
	defer close(p.done)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("mqtt connection loop panicked", "panic", r)
		}
	}()
	backoff := time.Second
	failures := 0
	for {
		lost := make(chan error, 1)
		opts := p.opts // a fresh client, with a fresh in-memory store, per connection
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
		client := paho.NewClient(&opts)
		tok := client.Connect()
		select {
		case <-tok.Done():
		case <-p.stop:
			client.Disconnect(0)
			return
		}
		if err := tok.Error(); err != nil {
			p.state.Set(false, err)
			failures++
			if failures == 1 || failures%10 == 0 {
				p.log.Warn("mqtt connect failed, retrying", "err", err, "attempts", failures, "next_in", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-p.stop:
				return
			}
			backoff = min(backoff*2, p.cfg.MaxReconnect)
			continue
		}
		failures, backoff = 0, time.Second
		p.log.Info("mqtt connected")
		if p.cfg.AvailabilityTopic != "" {
			client.Publish(p.cfg.AvailabilityTopic, 1, true, "online")
		}
		p.mu.Lock()
		p.client = client
		subs, hooks := p.subs, p.onConnect
		p.mu.Unlock()
		p.state.Set(true, nil)
		for _, s := range subs {
			p.subscribe(client, s)
		}
		for _, f := range hooks {
			f()
		}

		select {
		case err := <-lost:
			p.mu.Lock()
			p.client = nil
			p.mu.Unlock()
			p.state.Set(false, err)
			p.log.Warn("mqtt connection lost, reconnecting", "err", err)
		case <-p.stop:
			p.mu.Lock()
			p.client = nil
			p.mu.Unlock()
			if p.cfg.AvailabilityTopic != "" {
				client.Publish(p.cfg.AvailabilityTopic, 1, true, "offline").WaitTimeout(2 * time.Second)
			}
			client.Disconnect(250)
			return
		}
	}
}

// ParseTopic parses a topic template and checks its literal text: no
// wildcards, no NUL, no empty levels, not a $SYS-style topic.
func ParseTopic(s string) (*forward.Template, error) {
	t, err := forward.ParseTemplate(s)
	if err != nil {
		return nil, fmt.Errorf("mqtt: topic: %w", err)
	}
	if err := checkTopicLiteral(s); err != nil {
		return nil, fmt.Errorf("mqtt: topic %q: %w", s, err)
	}
	return t, nil
}

func checkTopicLiteral(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case strings.ContainsAny(s, "+#\x00"):
		return errors.New("must not contain '+', '#' or NUL")
	case strings.HasPrefix(s, "$"):
		return errors.New("must not start with '$' (reserved for the broker)")
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//"):
		return errors.New("must not have empty levels (leading, trailing or double '/')")
	}
	return nil
}

// topicValue makes one placeholder value a single safe topic level.
func topicValue(v string) string {
	v = strings.Map(func(r rune) rune {
		switch r {
		case '/', '+', '#', 0:
			return '_'
		}
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, strings.TrimSpace(v))
	if v == "" {
		return sink.UnknownDevice
	}
	return v
}

// maxTopicBytes keeps topics well inside MQTT's 65535-byte limit.
const maxTopicBytes = 1024

// SanitizeTopic is the last guard before the broker: it replaces wildcards
// and NUL, fills empty levels with "_", and caps the length.
func SanitizeTopic(t string) string {
	t = strings.Map(func(r rune) rune {
		switch r {
		case '+', '#', 0:
			return '_'
		}
		return r
	}, strings.ToValidUTF8(t, "_"))
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if l == "" {
			levels[i] = "_"
		}
	}
	t = strings.Join(levels, "/")
	if strings.HasPrefix(t, "$") {
		t = "_" + t[1:]
	}
	for len(t) > maxTopicBytes {
		_, size := utf8.DecodeLastRuneInString(t)
		t = t[:len(t)-size]
	}
	return t
}
