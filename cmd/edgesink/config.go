package main

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgesink/edgesink/board"
	"github.com/edgesink/edgesink/forward/broker"
	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/serial"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// Config is the whole configuration file. Every key is documented in
// deploy/edgesink.yaml, which the tests check against DefaultConfig.
type Config struct {
	Site   string       `yaml:"site"` // TOPICS.md: part of default topics and the MQTT client id
	Log    LogConfig    `yaml:"log"`
	SMTP   SMTPConfig   `yaml:"smtp"`
	MQTT   MQTTConfig   `yaml:"mqtt"`
	Serial SerialConfig `yaml:"serial"`
	Spool  SpoolConfig  `yaml:"spool"`
	Board  BoardConfig  `yaml:"board"`
	Auth   AuthConfig   `yaml:"auth"`
}

// SMTPTLSConfig is TLS for devices: STARTTLS and implicit TLS (SMTPS).
type SMTPTLSConfig struct {
	StartTLS       bool   `yaml:"starttls"`
	ListenImplicit string `yaml:"listen_implicit"`
	CertFile       string `yaml:"cert_file"`
	KeyFile        string `yaml:"key_file"`
	MinVersion     string `yaml:"min_version"`
	Dir            string `yaml:"dir"`
}

func (t SMTPTLSConfig) enabled() bool { return t.StartTLS || t.ListenImplicit != "" }

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

// AuthConfig is how devices log in (SMTP AUTH PLAIN and LOGIN).
type AuthConfig struct {
	Mode          string            `yaml:"mode"`           // off, optional or required
	AllowInsecure bool              `yaml:"allow_insecure"` // AUTH without TLS
	Users         map[string]string `yaml:"users"`          // name -> bcrypt hash
}

// BoardConfig is what edgesink does with the board it runs on.
type BoardConfig struct {
	LED     string `yaml:"led"`      // board.LEDOff or board.LEDActivity
	LEDPath string `yaml:"led_path"` // sysfs LED directory; "" = the detected board's
}

// serialFromBoard as serial.device means the detected board's UART.
const serialFromBoard = "board"

// SpoolConfig is the durable queue between SMTP and the outputs.
type SpoolConfig struct {
	Mode           string   `yaml:"mode"`
	Dir            string   `yaml:"dir"`
	MaxAlerts      int      `yaml:"max_alerts"`
	MaxSize        ByteSize `yaml:"max_size"`
	MaxAttempts    int      `yaml:"max_attempts"`
	RetryMin       Duration `yaml:"retry_min"`
	RetryMax       Duration `yaml:"retry_max"`
	DeliverTimeout Duration `yaml:"deliver_timeout"`
}

// LogConfig sets how edgesink logs.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// SMTPConfig is the device-facing side.
type SMTPConfig struct {
	Listen              string        `yaml:"listen"`
	Domain              string        `yaml:"domain"`
	MaxMessageSize      ByteSize      `yaml:"max_message_size"`
	MaxRecipients       int           `yaml:"max_recipients"`
	MaxLineLength       int           `yaml:"max_line_length"`
	MaxConnections      int           `yaml:"max_connections"`
	MaxMemory           ByteSize      `yaml:"max_memory"`
	ReadTimeout         Duration      `yaml:"read_timeout"`
	WriteTimeout        Duration      `yaml:"write_timeout"`
	DataTimeout         Duration      `yaml:"data_timeout"`
	DeliveryTimeout     Duration      `yaml:"delivery_timeout"`
	ShutdownGrace       Duration      `yaml:"shutdown_grace"`
	StrictLineEndings   bool          `yaml:"strict_line_endings"`
	MaxHeaderSize       ByteSize      `yaml:"max_header_size"`
	MaxMIMEParts        int           `yaml:"max_mime_parts"`
	MaxErrors           int           `yaml:"max_errors"`
	AllowNetworks       []string      `yaml:"allow_networks"`
	AllowSenders        []string      `yaml:"allow_senders"`
	AllowRecipients     []string      `yaml:"allow_recipients"`
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip"`
	MaxMailsPerMinute   int           `yaml:"max_mails_per_minute"`
	TLS                 SMTPTLSConfig `yaml:"tls"`
}

// MQTTConfig is the MQTT output.
type MQTTConfig struct {
	Broker               string        `yaml:"broker"`
	EmbeddedListen       string        `yaml:"embedded_listen"`
	BaseTopic            string        `yaml:"base_topic"`
	ClientID             string        `yaml:"client_id"`
	Username             string        `yaml:"username"`
	Password             string        `yaml:"password"`
	Topic                string        `yaml:"topic"`
	AvailabilityTopic    string        `yaml:"availability_topic"`
	QoS                  int           `yaml:"qos"`
	Retain               bool          `yaml:"retain"`
	KeepAlive            Duration      `yaml:"keep_alive"`
	ConnectTimeout       Duration      `yaml:"connect_timeout"`
	MaxReconnectInterval Duration      `yaml:"max_reconnect_interval"`
	TLS                  MQTTTLSConfig `yaml:"tls"`
}

// MQTTTLSConfig is how edgesink trusts, and proves itself to, a TLS broker.
type MQTTTLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SerialConfig is the serial output; an empty device disables it.
type SerialConfig struct {
	Device        string   `yaml:"device"`
	Baud          int      `yaml:"baud"`
	DataBits      int      `yaml:"data_bits"`
	Parity        string   `yaml:"parity"`
	StopBits      string   `yaml:"stop_bits"`
	Template      string   `yaml:"template"`
	MaxLineLength int      `yaml:"max_line_length"`
	WriteTimeout  Duration `yaml:"write_timeout"`
}

// Broker values with a meaning of their own.
const (
	brokerEmbedded = "embedded"
	brokerNone     = "none"
)

// DefaultConfig is what edgesink runs with when given no file: SMTP on
// loopback port 2525, alerts to the embedded broker on loopback port 1883.
func DefaultConfig() Config {
	s := smtpd.DefaultConfig()
	return Config{
		Log: LogConfig{Level: "info", Format: "text"},
		SMTP: SMTPConfig{
			Listen:              "127.0.0.1:2525",
			Domain:              s.Domain,
			MaxMessageSize:      ByteSize(s.MaxMessageBytes),
			MaxRecipients:       s.MaxRecipients,
			MaxLineLength:       s.MaxLineLength,
			MaxConnections:      s.MaxConnections,
			MaxMemory:           ByteSize(s.MaxMemory),
			ReadTimeout:         Duration(s.ReadTimeout),
			WriteTimeout:        Duration(s.WriteTimeout),
			DataTimeout:         Duration(s.DataTimeout),
			DeliveryTimeout:     Duration(s.HandlerTimeout),
			ShutdownGrace:       Duration(30 * time.Second),
			MaxHeaderSize:       ByteSize(s.MaxHeaderBytes),
			MaxMIMEParts:        s.MaxMIMEParts,
			MaxErrors:           s.MaxErrors,
			AllowNetworks:       prefixStrings(smtpd.DefaultNetworks),
			AllowSenders:        []string{},
			AllowRecipients:     []string{},
			MaxConnectionsPerIP: smtpd.DefaultMaxConnectionsPerIP,
			MaxMailsPerMinute:   smtpd.DefaultMailsPerMinute,
			TLS:                 SMTPTLSConfig{MinVersion: "1.2"},
		},
		MQTT: MQTTConfig{
			Broker:               brokerEmbedded,
			EmbeddedListen:       broker.DefaultAddr,
			QoS:                  1,
			KeepAlive:            Duration(mqtt.DefaultKeepAlive),
			ConnectTimeout:       Duration(mqtt.DefaultConnectTimeout),
			MaxReconnectInterval: Duration(mqtt.DefaultMaxReconnect),
		},
		Spool: SpoolConfig{
			Mode:           spool.ModeDisk,
			MaxAlerts:      spool.DefaultMaxAlerts,
			MaxSize:        spool.DefaultMaxBytes,
			MaxAttempts:    spool.DefaultMaxAttempts,
			RetryMin:       Duration(spool.DefaultRetryMin),
			RetryMax:       Duration(spool.DefaultRetryMax),
			DeliverTimeout: Duration(spool.DefaultDeliverTimeout),
		},
		Board: BoardConfig{LED: board.LEDOff},
		Auth:  AuthConfig{Mode: smtpd.AuthOff, Users: map[string]string{}},
		Serial: SerialConfig{
			Baud:          serial.DefaultBaud,
			DataBits:      serial.DefaultDataBits,
			Parity:        serial.DefaultParity,
			StopBits:      serial.DefaultStopBits,
			Template:      serial.DefaultTemplate,
			MaxLineLength: serial.DefaultMaxLineLength,
			WriteTimeout:  Duration(serial.DefaultWriteTimeout),
		},
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
	if cfg.MQTT.Password != "" || len(cfg.Auth.Users) > 0 {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			return Config{}, fmt.Errorf("%s: holds passwords (mqtt.password or auth.users) but is readable by every user: "+
				"chmod o-r %s", path, path)
		}
	}
	return cfg, nil
}

// ParseConfig decodes YAML on top of the defaults. Unknown keys, bad values
// and impossible settings are errors that name the line.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, tidyYAMLError(err)
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
// network or devices.
func (c Config) Validate() error {
	if _, err := parseLevel(c.Log.Level); err != nil {
		return bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", "%q: want text or json", c.Log.Format)
	}
	if err := checkHostPort(c.SMTP.Listen); err != nil {
		return bad("smtp.listen", "%v", err)
	}
	if c.SMTP.MaxMemory < c.SMTP.MaxMessageSize+4096 {
		return bad("smtp.max_memory", "%d bytes: must exceed smtp.max_message_size (%d) by at least 4KiB, or the largest mail could never be received",
			c.SMTP.MaxMemory, c.SMTP.MaxMessageSize)
	}
	if _, err := parsePrefixes(c.SMTP.AllowNetworks); err != nil {
		return bad("smtp.allow_networks", "%v", err)
	}
	if len(c.SMTP.AllowNetworks) == 0 {
		return bad("smtp.allow_networks", "empty: no client could send; to allow any, list 0.0.0.0/0 and ::/0")
	}
	if err := (smtpd.Policy{Senders: c.SMTP.AllowSenders}).Validate(); err != nil {
		return bad("smtp.allow_senders", "%v", err)
	}
	if err := (smtpd.Policy{Recipients: c.SMTP.AllowRecipients}).Validate(); err != nil {
		return bad("smtp.allow_recipients", "%v", err)
	}
	if c.SMTP.MaxLineLength < 1000 {
		return bad("smtp.max_line_length", "%d: must be at least 1000 (RFC 5321)", c.SMTP.MaxLineLength)
	}
	for key, v := range map[string]int64{
		"smtp.max_message_size": int64(c.SMTP.MaxMessageSize), "smtp.max_recipients": int64(c.SMTP.MaxRecipients),
		"smtp.max_connections": int64(c.SMTP.MaxConnections), "smtp.max_memory": int64(c.SMTP.MaxMemory),
		"smtp.read_timeout":  int64(c.SMTP.ReadTimeout),
		"smtp.write_timeout": int64(c.SMTP.WriteTimeout), "smtp.data_timeout": int64(c.SMTP.DataTimeout),
		"smtp.delivery_timeout": int64(c.SMTP.DeliveryTimeout), "smtp.shutdown_grace": int64(c.SMTP.ShutdownGrace),
		"smtp.max_header_size": int64(c.SMTP.MaxHeaderSize), "smtp.max_mime_parts": int64(c.SMTP.MaxMIMEParts),
		"smtp.max_errors":             int64(c.SMTP.MaxErrors),
		"smtp.max_connections_per_ip": int64(c.SMTP.MaxConnectionsPerIP), "smtp.max_mails_per_minute": int64(c.SMTP.MaxMailsPerMinute),
	} {
		if v <= 0 {
			return bad(key, "must be greater than zero")
		}
	}
	if _, err := smtpd.ParseTLSVersion(c.SMTP.TLS.MinVersion); err != nil {
		return bad("smtp.tls.min_version", "%v", err)
	}
	if (c.SMTP.TLS.CertFile == "") != (c.SMTP.TLS.KeyFile == "") {
		return bad("smtp.tls.cert_file", "cert_file and key_file go together (or both empty: self-signed)")
	}
	if c.SMTP.TLS.ListenImplicit != "" {
		if err := checkHostPort(c.SMTP.TLS.ListenImplicit); err != nil {
			return bad("smtp.tls.listen_implicit", "%v", err)
		}
	}
	if err := c.Auth.sinkAuth().Validate(); err != nil {
		return bad("auth", "%v", err)
	}
	if err := c.SMTP.sinkConfig(c.Auth.sinkAuth()).Validate(); err != nil {
		return bad("smtp", "%v", err)
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
	default:
		if _, err := c.MQTT.publisherConfig(c.MQTT.Broker, c.Site); err != nil {
			return bad("mqtt.broker", "%v", err)
		}
	}
	if c.MQTT.Broker != brokerNone && c.MQTT.BaseTopic != "" {
		if _, err := mqtt.ParseTopic(c.MQTT.BaseTopic); err != nil || strings.Contains(c.MQTT.BaseTopic, "{") {
			return bad("mqtt.base_topic", "%q: want a literal topic such as edgesink or home/edgesink", c.MQTT.BaseTopic)
		}
	}
	if c.MQTT.Broker != brokerNone {
		if _, err := mqtt.ParseTopic(cmp.Or(c.MQTT.Topic, mqtt.Base(c.Site)+"/{device}/alert")); err != nil {
			return bad("mqtt.topic", "%v", err)
		}
		if c.MQTT.QoS != 1 && c.MQTT.QoS != 2 {
			return bad("mqtt.qos", "%d: want 1 or 2 (QoS 0 gives no proof of delivery)", c.MQTT.QoS)
		}
	}
	if c.Serial.Device == serialFromBoard {
		if _, err := c.Serial.device(); err != nil {
			return bad("serial.device", "%v", err)
		}
	}
	switch c.Board.LED {
	case board.LEDOff, board.LEDActivity:
	default:
		return bad("board.led", "%q: want off or activity", c.Board.LED)
	}
	if c.Serial.Device != "" {
		if _, err := c.Serial.portConfig().Mode(); err != nil {
			return bad("serial", "%v", err)
		}
		if _, err := serial.New(c.Serial.portConfig(), nil); err != nil {
			return bad("serial", "%v", err)
		}
	}
	switch c.Spool.Mode {
	case spool.ModeDisk, spool.ModeMemory, spool.ModeOff:
	default:
		return bad("spool.mode", "%q: want disk, memory or off", c.Spool.Mode)
	}
	if _, err := c.Spool.spoolConfig(); err != nil {
		return bad("spool", "%v", err)
	}
	if c.MQTT.Broker == brokerNone && c.Serial.Device == "" {
		return bad("mqtt.broker", "no output configured: set mqtt.broker or serial.device")
	}
	return nil
}

// device is the serial device to open: as configured, or for "board" the
// detected board's default UART.
func (c SerialConfig) device() (string, error) {
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

func (s SMTPConfig) sinkConfig(auth smtpd.Auth) smtpd.Config {
	return smtpd.Config{
		Domain:            s.Domain,
		MaxMessageBytes:   int64(s.MaxMessageSize),
		MaxRecipients:     s.MaxRecipients,
		MaxLineLength:     s.MaxLineLength,
		MaxConnections:    s.MaxConnections,
		MaxMemory:         int64(s.MaxMemory),
		ReadTimeout:       time.Duration(s.ReadTimeout),
		WriteTimeout:      time.Duration(s.WriteTimeout),
		DataTimeout:       time.Duration(s.DataTimeout),
		HandlerTimeout:    time.Duration(s.DeliveryTimeout),
		StrictLineEndings: s.StrictLineEndings,
		MaxHeaderBytes:    int(s.MaxHeaderSize),
		MaxMIMEParts:      s.MaxMIMEParts,
		MaxErrors:         s.MaxErrors,
		Auth:              auth,
		Policy: smtpd.Policy{
			Networks:            mustPrefixes(s.AllowNetworks),
			Senders:             s.AllowSenders,
			Recipients:          s.AllowRecipients,
			MaxConnectionsPerIP: s.MaxConnectionsPerIP,
			MailsPerMinute:      s.MaxMailsPerMinute,
		},
	}
}

func (a AuthConfig) sinkAuth() smtpd.Auth {
	return smtpd.Auth{Mode: a.Mode, Users: a.Users, AllowInsecure: a.AllowInsecure}
}

// parsePrefixes reads CIDR ranges ("192.168.1.0/24") and single addresses
// ("192.168.1.20") for smtp.allow_networks.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want a network (192.168.1.0/24) or an address (192.168.1.20)", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// mustPrefixes is parsePrefixes for lists Validate has checked.
func mustPrefixes(list []string) []netip.Prefix {
	p, _ := parsePrefixes(list)
	return p
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
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

// publisherConfig builds the MQTT output's settings for brokerURL and the
// instance's site, loading TLS files where given.
func (m MQTTConfig) publisherConfig(brokerURL, site string) (mqtt.Config, error) {
	cfg := mqtt.Config{
		Broker:            brokerURL,
		Site:              site,
		BaseTopic:         m.BaseTopic,
		ClientID:          m.ClientID,
		Username:          m.Username,
		Password:          m.Password,
		Topic:             m.Topic,
		QoS:               byte(m.QoS),
		Retain:            m.Retain,
		KeepAlive:         time.Duration(m.KeepAlive),
		ConnectTimeout:    time.Duration(m.ConnectTimeout),
		MaxReconnect:      time.Duration(m.MaxReconnectInterval),
		AvailabilityTopic: m.AvailabilityTopic,
	}
	if !strings.Contains(brokerURL, "://") {
		return cfg, fmt.Errorf("%q: want tcp://host:port, ssl://host:port, %s or %s", brokerURL, brokerEmbedded, brokerNone)
	}
	if !strings.HasPrefix(brokerURL, "tcp://") && !strings.HasPrefix(brokerURL, "mqtt://") &&
		!strings.HasPrefix(brokerURL, "ws://") {
		tc, err := m.TLS.load()
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	if _, err := mqtt.ValidateConfig(cfg); err != nil {
		return cfg, err
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

func (s SerialConfig) portConfig() serial.Config {
	dev, err := s.device()
	if err != nil {
		dev = s.Device // Validate reports it
	}
	return serial.Config{
		Device:        dev,
		Baud:          s.Baud,
		DataBits:      s.DataBits,
		Parity:        s.Parity,
		StopBits:      s.StopBits,
		Template:      s.Template,
		MaxLineLength: s.MaxLineLength,
		WriteTimeout:  time.Duration(s.WriteTimeout),
	}
}

// spoolConfig resolves the spool's settings; an empty dir means the state
// directory: systemd's StateDirectory, else $XDG_STATE_HOME/edgesink, else
// ~/.local/state/edgesink, with "spool" below it.
func (c SpoolConfig) spoolConfig() (spool.Config, error) {
	return c.spoolConfigIn(stateDir)
}

// spoolConfigIn is spoolConfig with the state directory from stateDir.
func (c SpoolConfig) spoolConfigIn(stateDir func() (string, error)) (spool.Config, error) {
	dir := c.Dir
	if dir == "" && c.Mode == spool.ModeDisk {
		state, err := stateDir()
		if err != nil {
			return spool.Config{}, err
		}
		dir = filepath.Join(state, "spool")
	}
	cfg := spool.Config{
		Dir:            dir,
		Mode:           c.Mode,
		MaxAlerts:      c.MaxAlerts,
		MaxBytes:       int64(c.MaxSize),
		MaxAttempts:    c.MaxAttempts,
		RetryMin:       time.Duration(c.RetryMin),
		RetryMax:       time.Duration(c.RetryMax),
		DeliverTimeout: time.Duration(c.DeliverTimeout),
	}
	if c.MaxAlerts <= 0 || c.MaxSize <= 0 || c.MaxAttempts <= 0 || c.RetryMin <= 0 || c.DeliverTimeout <= 0 {
		return cfg, errors.New("max_alerts, max_size, max_attempts, retry_min and deliver_timeout must be greater than zero")
	}
	if c.RetryMax < c.RetryMin {
		return cfg, errors.New("retry_max must be at least retry_min")
	}
	return cfg, nil
}

// lockDir is where the instance lock lives: the spool directory in disk
// mode; otherwise spool.dir when set, else the state directory.
func (c Config) lockDir() (string, error) {
	if c.Spool.Mode == spool.ModeDisk {
		scfg, err := c.Spool.spoolConfig()
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

// Duration is a time.Duration written as "30s", "5m" or "1h30m".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ByteSize is a size written as a number of bytes or with a unit: 512KiB,
// 25MiB, 10MB.
type ByteSize int64

// UnmarshalYAML parses a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 25MiB, 512KiB, 1000000)", s)
	}
	return n * mult, nil
}

// String formats the duration as Go does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }
