package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgesink/edgesink/board"
	"github.com/edgesink/edgesink/forward/broker"
	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/route"
	"github.com/edgesink/edgesink/forward/serial"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/status"
	"github.com/edgesink/edgesink/sink/classify"
	"github.com/edgesink/edgesink/sink/config"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// Config is the whole configuration file. Every key is documented in
// deploy/edgesink.yaml, which the tests check against DefaultConfig.
//
// A section that configures one package is that package's Config, with its
// yaml names, defaults (DefaultConfig) and validation (Validate); cmd adds
// only the keys of its own wiring (listen addresses, the broker to use, the
// board, logging, the site). A new key is a field of the package's Config
// with its yaml name, and a commented line in deploy/edgesink.yaml.
type Config struct {
	Site   string        `yaml:"site"` // TOPICS.md: part of default topics and the MQTT client id
	Log    LogConfig     `yaml:"log"`
	SMTP   SMTPConfig    `yaml:"smtp"`
	MQTT   MQTTConfig    `yaml:"mqtt"`
	Serial serial.Config `yaml:"serial"` // an empty device disables it; "board" is the board's UART
	Spool  spool.Config  `yaml:"spool"`  // an empty dir is the state directory's spool/
	Board  BoardConfig   `yaml:"board"`
	Auth   smtpd.Auth    `yaml:"auth"`
	// Coalesce folds alert storms in the spool (spool.CoalesceConfig);
	// Routes are the routing rules, first match wins (forward/route).
	Coalesce spool.CoalesceConfig `yaml:"coalesce"`
	Routes   []route.Rule         `yaml:"routes"`
	// HomeAssistant is MQTT discovery, part of the MQTT output;
	// Snapshots are the images it publishes (hass.Snapshots).
	HomeAssistant hass.Config         `yaml:"homeassistant"`
	Snapshots     hass.SnapshotConfig `yaml:"snapshots"`
	// Classify is the devices map and the user's templates (top-level
	// devices: and templates:).
	Classify classify.Config `yaml:",inline"`
	HTTP     status.Config   `yaml:"http"` // the status page, /metrics, /healthz, /readyz

	// path is the file it was read from, "" for the defaults: SIGHUP
	// reloads routes, devices and templates from it; the status page shows it.
	path string `yaml:"-"`
}

// SMTPTLSConfig is TLS for devices: STARTTLS and implicit TLS (SMTPS).
type SMTPTLSConfig struct {
	StartTLS       bool   `yaml:"starttls"`
	ListenImplicit Addrs  `yaml:"listen_implicit"` // one address or a list: port 465 and any other
	CertFile       string `yaml:"cert_file"`
	KeyFile        string `yaml:"key_file"`
	MinVersion     string `yaml:"min_version"`
	Dir            string `yaml:"dir"`
}

func (t SMTPTLSConfig) enabled() bool { return t.StartTLS || len(t.ListenImplicit) > 0 }

// certificate loads the configured certificate, or the self-signed one in
// the state directory (made on first use). created tells it was made now.
func (t SMTPTLSConfig) certificate(host string) (c *smtpd.Certificate, created bool, err error) {
	if t.CertFile != "" {
		c, err = smtpd.LoadCertificate(t.CertFile, t.KeyFile)
		return c, false, err
	}
	dir := t.Dir
	if dir == "" {
		sd, err := stateDir()
		if err != nil {
			return nil, false, err
		}
		dir = filepath.Join(sd, "tls")
	}
	return smtpd.SelfSignedCertificate(dir, host)
}

// BoardConfig is what edgesink does with the board it runs on.
type BoardConfig struct {
	LED     string `yaml:"led"`      // board.LEDOff or board.LEDActivity
	LEDPath string `yaml:"led_path"` // sysfs LED directory; "" = the detected board's
}

// serialFromBoard as serial.device means the detected board's UART.
const serialFromBoard = "board"

// LogConfig sets how edgesink logs.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// SMTPConfig is the device-facing side: the SMTP server's own settings
// (smtpd.Config, inline) and where cmd listens.
type SMTPConfig struct {
	Listen        Addrs         `yaml:"listen"` // one address or a list (25, 587, 2525 at once); all share policy, auth and limits
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	TLS           SMTPTLSConfig `yaml:"tls"`
	smtpd.Config  `yaml:",inline"`
}

// MQTTConfig is the MQTT output: the publisher's settings (mqtt.Config,
// inline), which broker to use, and its TLS files.
type MQTTConfig struct {
	Broker         string        `yaml:"broker"` // URL, "embedded" or "none"
	EmbeddedListen string        `yaml:"embedded_listen"`
	TLS            MQTTTLSConfig `yaml:"tls"`
	mqtt.Config    `yaml:",inline"`
	// Embedded is the embedded broker's logins and TLS listener
	// (embedded_users, embedded_allow_anonymous, embedded_tls).
	Embedded broker.Config `yaml:",inline"`
}

// MQTTTLSConfig is how edgesink trusts, and proves itself to, a TLS broker.
type MQTTTLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Broker values with a meaning of their own.
const (
	brokerEmbedded = "embedded"
	brokerNone     = "none"
)

// DefaultConfig is what edgesink runs with when given no file: SMTP on
// loopback port 2525, alerts to the embedded broker on loopback port 1883.
// The packages' settings are their own defaults.
func DefaultConfig() Config {
	s := smtpd.DefaultConfig()
	auth := s.Auth
	s.Auth = smtpd.Auth{} // the logins are the auth section's (sinkConfig)
	return Config{
		Log: LogConfig{Level: "info", Format: "text"},
		SMTP: SMTPConfig{
			Listen:        Addrs{"127.0.0.1:2525"},
			ShutdownGrace: 30 * time.Second,
			TLS:           SMTPTLSConfig{MinVersion: "1.2"},
			Config:        s,
		},
		MQTT: MQTTConfig{
			Broker:         brokerEmbedded,
			EmbeddedListen: broker.DefaultAddr,
			Config:         mqtt.DefaultConfig(),
			Embedded:       broker.DefaultConfig(),
		},
		Serial: serial.DefaultConfig(),
		Spool:  spool.DefaultConfig(),
		Board:  BoardConfig{LED: board.LEDOff},
		Auth:   auth,

		Coalesce:      spool.DefaultCoalesceConfig(),
		Routes:        []route.Rule{},
		HomeAssistant: hass.DefaultConfig(),
		Snapshots:     hass.DefaultSnapshotConfig(),
		Classify:      classify.DefaultConfig(),
		HTTP:          status.DefaultConfig(),
	}
}

// LoadConfig reads and validates a YAML file on top of the defaults.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.MQTT.Password != "" || len(cfg.Auth.Users) > 0 || len(cfg.MQTT.Embedded.Users) > 0 || len(cfg.HTTP.Users) > 0 {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			return Config{}, fmt.Errorf("%s: holds passwords (mqtt.password, mqtt.embedded_users, auth.users or http.users) but is readable by every user: "+
				"chmod o-r %s", path, path)
		}
	}
	return cfg, nil
}

// ParseConfig decodes YAML on top of the defaults. Unknown keys, bad values
// and impossible settings are errors that name the line.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	if err := decodeYAML(data, &cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			if line := keyLine(data, ke.key); line > 0 {
				return Config{}, fmt.Errorf("line %d: %w", line, err)
			}
		}
		return Config{}, err
	}
	return cfg, nil
}

// tidyYAMLError drops yaml.v3's "yaml: unmarshal errors:" preamble so the
// first thing a user reads is "line N: ...".
func tidyYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// keyError is a validation failure of one dotted key, e.g. "smtp.listen".
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.key + ": " + e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

func bad(key string, format string, args ...any) error {
	return &keyError{key: key, err: fmt.Errorf(format, args...)}
}

// keyLine finds the line of a dotted key in a YAML document, 0 if absent.
func keyLine(data []byte, key string) int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return 0
	}
	node := root.Content[0]
	line := 0
	for _, part := range strings.Split(key, ".") {
		if node.Kind == yaml.SequenceNode {
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(node.Content) {
				return line
			}
			node, line = node.Content[i], node.Content[i].Line
			continue
		}
		if node.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == part {
				line, node, found = node.Content[i].Line, node.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// Validate checks everything that can be checked without touching the
// network or devices. Each package validates its own section; this adds the
// section's name to the key at fault, and checks cmd's own keys.
func (c Config) Validate() error {
	if _, err := parseLevel(c.Log.Level); err != nil {
		return bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", "%q: want text or json", c.Log.Format)
	}
	if len(c.SMTP.Listen) == 0 {
		return bad("smtp.listen", "no address: devices could not send (e.g. 0.0.0.0:25)")
	}
	if err := c.SMTP.Listen.check(); err != nil {
		return bad("smtp.listen", "%v", err)
	}
	if c.SMTP.ShutdownGrace <= 0 {
		return bad("smtp.shutdown_grace", "must be greater than zero")
	}
	if err := c.Auth.Validate(); err != nil {
		return inSection("auth", err)
	}
	if err := c.sinkConfig().Validate(); err != nil {
		return inSection("smtp", err)
	}
	if _, err := smtpd.ParseTLSVersion(c.SMTP.TLS.MinVersion); err != nil {
		return bad("smtp.tls.min_version", "%v", err)
	}
	if (c.SMTP.TLS.CertFile == "") != (c.SMTP.TLS.KeyFile == "") {
		return bad("smtp.tls.cert_file", "cert_file and key_file go together (or both empty: self-signed)")
	}
	if err := c.SMTP.TLS.ListenImplicit.check(); err != nil {
		return bad("smtp.tls.listen_implicit", "%v", err)
	}
	for _, a := range c.SMTP.TLS.ListenImplicit {
		if slices.Contains(c.SMTP.Listen, a) && !anyPort(a) {
			return bad("smtp.tls.listen_implicit", "%q is on smtp.listen too: one port speaks either plain SMTP (with STARTTLS) or TLS from the first byte", a)
		}
	}
	if err := mqtt.CheckSite(c.Site); err != nil {
		return bad("site", "%v", err)
	}
	switch c.MQTT.Broker {
	case brokerNone:
	case brokerEmbedded:
		if err := checkHostPort(c.MQTT.EmbeddedListen); err != nil {
			return bad("mqtt.embedded_listen", "%v", err)
		}
		if err := c.MQTT.Embedded.Validate(); err != nil {
			return inSection("mqtt", err)
		}
		if l := c.MQTT.Embedded.TLS.Listen; l != "" {
			if err := checkHostPort(l); err != nil {
				return bad("mqtt.embedded_tls.listen", "%v", err)
			}
		}
		pcfg, _ := c.MQTT.publisherConfig("tcp://"+c.MQTT.EmbeddedListen, c.Site)
		if err := pcfg.Validate(); err != nil {
			return inSection("mqtt", err)
		}
	default:
		if !strings.Contains(c.MQTT.Broker, "://") {
			return bad("mqtt.broker", "%q: want tcp://host:port, ssl://host:port, %s or %s", c.MQTT.Broker, brokerEmbedded, brokerNone)
		}
		pcfg, err := c.MQTT.publisherConfig(c.MQTT.Broker, c.Site)
		if err != nil {
			return bad("mqtt.tls", "%v", err)
		}
		if err := pcfg.Validate(); err != nil {
			return inSection("mqtt", err)
		}
	}
	if c.Serial.Device == serialFromBoard {
		if _, err := serialDevice(c.Serial); err != nil {
			return bad("serial.device", "%v", err)
		}
	}
	switch c.Board.LED {
	case board.LEDOff, board.LEDActivity:
	default:
		return bad("board.led", "%q: want off or activity", c.Board.LED)
	}
	if c.Serial.Device != "" {
		if err := portConfig(c.Serial).Validate(); err != nil {
			return inSection("serial", err)
		}
	}
	sp, err := spoolConfig(c.Spool)
	if err != nil {
		return bad("spool.dir", "%v", err)
	}
	if err := sp.Validate(); err != nil {
		return inSection("spool", err)
	}
	if err := c.HTTP.Validate(); err != nil {
		return inSection("http", err)
	}
	if c.MQTT.Broker == brokerNone && c.Serial.Device == "" {
		return bad("mqtt.broker", "no output configured: set mqtt.broker or serial.device")
	}
	if err := c.Coalesce.Validate(); err != nil {
		return inSection("coalesce", err)
	}
	if _, err := c.routes(); err != nil {
		return &keyError{key: "routes", err: err}
	}
	if err := c.HomeAssistant.Validate(); err != nil {
		return inSection("homeassistant", err)
	}
	if err := c.Snapshots.Validate(); err != nil {
		return inSection("snapshots", err)
	}
	if c.Snapshots.Store == hass.StoreDisk && c.Spool.Mode == spool.ModeMemory {
		return bad("snapshots.store", "disk: spool.mode memory promises no disk writes (use latest, kept in RAM then)")
	}
	if err := c.offDelayAfterAutoStop(); err != nil {
		return err
	}
	if err := c.Classify.Validate(); err != nil {
		return inSection("", err)
	}
	return nil
}

// routes compiles the routing rules against the outputs this config has.
func (c Config) routes() (*route.Table, error) {
	env := route.Env{}
	if c.MQTT.Broker != brokerNone {
		id := c.mqttIdentity()
		env.Outputs = append(env.Outputs, route.MQTT)
		env.CheckTopic = func(tmpl string) error {
			_, err := mqtt.RouteTopic(id.BaseTopic, c.Site, tmpl)
			return err
		}
	}
	if c.Serial.Device != "" {
		env.Outputs = append(env.Outputs, route.Serial)
	}
	return route.Compile(c.Routes, env)
}

// spoolWith is the spool's settings with the coalesce section's.
func (c Config) spoolWith(sp spool.Config) spool.Config {
	sp.Coalesce = c.Coalesce
	return sp
}

// offDelayAfterAutoStop checks the two sections against each other: a
// motion sensor's safety net (homeassistant.off_delay) must outlast the
// synthetic stop (coalesce.auto_stop), or a storm would flicker it OFF.
func (c Config) offDelayAfterAutoStop() error {
	if !c.homeAssistant() || c.Coalesce.Disabled {
		return nil
	}
	off := c.HomeAssistant.OffDelay
	if off == 0 {
		off = hass.DefaultOffDelay
	}
	types := make([]string, 0, len(c.Coalesce.AutoStop))
	for typ := range c.Coalesce.AutoStop {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		if d := c.Coalesce.AutoStop[typ]; hass.HasOffDelay(typ) && d > 0 && off <= d {
			return bad("homeassistant.off_delay", "%s is not longer than coalesce.auto_stop.%s (%s): Home Assistant would turn the sensor OFF before edgesink's stop", off, typ, d)
		}
	}
	return nil
}

// homeAssistant tells whether Home Assistant discovery runs: enabled, and
// MQTT is an output.
func (c Config) homeAssistant() bool {
	return c.HomeAssistant.Enabled && c.MQTT.Broker != brokerNone
}

// inSection names the key of a package's validation error within the
// file: a config.KeyError's key below section, else the section.
func inSection(section string, err error) error {
	var ke *config.KeyError
	if errors.As(err, &ke) {
		return &keyError{key: joinKey(section, ke.Key), err: ke.Err}
	}
	return &keyError{key: section, err: err}
}

// serialDevice is the serial device to open: as configured, or for "board"
// the detected board's default UART.
func serialDevice(c serial.Config) (string, error) {
	if c.Device != serialFromBoard {
		return c.Device, nil
	}
	p, name := detectedBoard()
	if p.SerialDevice == "" {
		return "", fmt.Errorf("%q: this board (%s) has no default serial device; name one, e.g. /dev/ttyUSB0", serialFromBoard, name)
	}
	return p.SerialDevice, nil
}

// ledPath is the LED to flash: as configured, else the detected board's.
func (c BoardConfig) ledPath() (string, error) {
	if c.LEDPath != "" {
		return c.LEDPath, nil
	}
	p, name := detectedBoard()
	if p.LED == "" {
		return "", fmt.Errorf("board.led: this board (%s) has no known activity LED; set board.led_path", name)
	}
	return p.LED, nil
}

// detectedBoard is this machine's board profile and a name for it in
// messages: the device-tree model, else the profile's description.
func detectedBoard() (board.Profile, string) {
	p, model, _ := board.Detect()
	if model == "" {
		model = p.Description
	}
	return p, model
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port, e.g. 0.0.0.0:25", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: host must be an IP address (or empty for all)", addr)
	}
	return nil
}

// sinkConfig is the SMTP server's settings: the smtp section's, with the
// auth section's logins.
func (c Config) sinkConfig() smtpd.Config {
	s := c.SMTP.Config
	s.Auth = c.Auth
	return s
}

// parsePrefix reads a CIDR range ("192.168.1.0/24") or a single address
// ("192.168.1.20"), as smtp.allow_networks lists them.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: want a network (192.168.1.0/24) or an address (192.168.1.20)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// mqttIdentity is the MQTT client id and status topic this config gives,
// defaults filled in (see TOPICS.md).
func (c Config) mqttIdentity() mqtt.Config {
	url := c.MQTT.Broker
	if url == brokerEmbedded || url == brokerNone {
		url = "tcp://" + c.MQTT.EmbeddedListen
	}
	pcfg, _ := c.MQTT.publisherConfig(url, c.Site)
	pcfg, _ = mqtt.ValidateConfig(pcfg)
	return pcfg
}

// publisherConfig is the MQTT output's settings for brokerURL and the
// instance's site, with the TLS files loaded when the broker speaks TLS.
func (m MQTTConfig) publisherConfig(brokerURL, site string) (mqtt.Config, error) {
	cfg := m.Config
	cfg.Broker, cfg.Site = brokerURL, site
	if !strings.HasPrefix(brokerURL, "tcp://") && !strings.HasPrefix(brokerURL, "mqtt://") &&
		!strings.HasPrefix(brokerURL, "ws://") {
		tc, err := m.TLS.load()
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

func (t MQTTTLSConfig) load() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt tls: ca_file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("mqtt tls: cert_file and key_file go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls: load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// portConfig is the serial output's settings, "board" resolved.
func portConfig(s serial.Config) serial.Config {
	if dev, err := serialDevice(s); err == nil {
		s.Device = dev
	} // else Validate reports it
	return s
}

// spoolConfig resolves the spool's directory; an empty dir means the state
// directory: systemd's StateDirectory, else $XDG_STATE_HOME/edgesink, else
// ~/.local/state/edgesink, with "spool" below it.
func spoolConfig(c spool.Config) (spool.Config, error) {
	return spoolConfigIn(c, stateDir)
}

// spoolConfigIn is spoolConfig with the state directory from stateDir.
func spoolConfigIn(c spool.Config, stateDir func() (string, error)) (spool.Config, error) {
	if c.Dir == "" && c.Mode == spool.ModeDisk {
		state, err := stateDir()
		if err != nil {
			return c, err
		}
		c.Dir = filepath.Join(state, "spool")
	}
	return c, nil
}

// lockDir is where the instance lock lives: the spool directory in disk
// mode; otherwise spool.dir when set, else the state directory.
func (c Config) lockDir() (string, error) {
	if c.Spool.Mode == spool.ModeDisk {
		scfg, err := spoolConfig(c.Spool)
		return scfg.Dir, err
	}
	if c.Spool.Dir != "" {
		return c.Spool.Dir, nil
	}
	return stateDir()
}

// stateDir is the service's state directory: systemd's StateDirectory=,
// else $XDG_STATE_HOME/edgesink, else ~/.local/state/edgesink.
func stateDir() (string, error) { return stateDirFrom(os.Getenv) }

func stateDirFrom(getenv func(string) string) (string, error) {
	if d := getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return strings.Split(d, ":")[0], nil
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "edgesink"), nil
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("no spool.dir given and no home directory: %w", err)
		}
	}
	return filepath.Join(home, ".local", "state", "edgesink"), nil
}

// host is where an installed package keeps its files, and the process
// environment. Operator commands (spool, check-config) use it to find what
// the service uses when run from a shell; tests give their own.
type host struct {
	config   string // the package's config file
	stateDir string // the unit's StateDirectory=
	getenv   func(string) string
}

func systemHost() host {
	return host{config: "/etc/edgesink/edgesink.yaml", stateDir: "/var/lib/edgesink", getenv: os.Getenv}
}

// installed tells whether the package is installed here: its state
// directory exists.
func (h host) installed() bool {
	fi, err := os.Stat(h.stateDir)
	return err == nil && fi.IsDir()
}

// cliStateDir is the state directory an operator command uses: the
// service's when the package is installed (run from a shell, the command
// has no STATE_DIRECTORY), else the same rules as the service.
func (h host) cliStateDir() (string, error) {
	if h.getenv("STATE_DIRECTORY") == "" && h.installed() {
		return h.stateDir, nil
	}
	return stateDirFrom(h.getenv)
}

// cliConfig loads the config an operator command reads: path when given,
// else the installed package's config file when there is one, else the
// defaults. It returns the file it read ("" for the defaults).
func (h host) cliConfig(path string) (Config, string, error) {
	if path == "" {
		if _, err := os.Stat(h.config); err != nil {
			return DefaultConfig(), "", nil
		}
		path = h.config
	}
	cfg, err := LoadConfig(path)
	return cfg, path, err
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}
