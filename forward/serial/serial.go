// Package serial writes one line per alert to a serial device: an LED sign,
// a GSM modem, a PLC. It is the only package that imports go.bug.st/serial.
//
// A write counts as delivered once the whole line is in the kernel's tty
// buffer. A device that disappears (USB unplugged) fails the write; the port
// is closed and reopened on the next alert, so it works again as soon as the
// device is back, and the failed alert is retried by its sender.
package serial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	bugst "go.bug.st/serial"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// Defaults for Config fields left empty.
const (
	DefaultTemplate      = "{received_at} {device} {subject}: {text_first_line}"
	DefaultBaud          = 9600
	DefaultDataBits      = 8
	DefaultParity        = "none"
	DefaultStopBits      = "1"
	DefaultMaxLineLength = 256
	DefaultWriteTimeout  = 5 * time.Second
)

// ErrBusy reports that an earlier write is still stuck in the device (flow
// control holding it, or nobody reading a pseudo-terminal).
var ErrBusy = errors.New("serial: previous write has not completed")

// Config describes the port and the line format. The yaml names are the
// keys of the configuration file's serial section.
type Config struct {
	Device        string        `yaml:"device"`          // e.g. /dev/serial0, /dev/ttyUSB0
	Baud          int           `yaml:"baud"`            //
	DataBits      int           `yaml:"data_bits"`       // 5 to 8
	Parity        string        `yaml:"parity"`          // none, odd, even, mark, space
	StopBits      string        `yaml:"stop_bits"`       // 1, 1.5, 2
	Template      string        `yaml:"template"`        // placeholders as in forward.Placeholders
	MaxLineLength int           `yaml:"max_line_length"` // bytes before the CRLF; longer lines are cut
	WriteTimeout  time.Duration `yaml:"write_timeout"`   //
	Site          string        `yaml:"-"`               // the instance's site, for {site} (top-level site setting)
}

// DefaultConfig is the line format and port settings edgesink uses unless
// told otherwise; no device, so no serial output. The configuration file
// starts from it.
func DefaultConfig() Config {
	return Config{
		Baud:          DefaultBaud,
		DataBits:      DefaultDataBits,
		Parity:        DefaultParity,
		StopBits:      DefaultStopBits,
		Template:      DefaultTemplate,
		MaxLineLength: DefaultMaxLineLength,
		WriteTimeout:  DefaultWriteTimeout,
	}
}

// Port is the serial output.
type Port struct {
	cfg  Config
	mode *bugst.Mode
	tmpl *forward.Template
	log  *slog.Logger

	// slot holds the open port (or nil when closed). Taking it from the
	// channel is the right to write; a write stuck in the kernel keeps it, so
	// later alerts fail fast with ErrBusy instead of queueing behind it.
	slot chan bugst.Port

	routed sync.Map // a routing rule's line template -> routedLine (route.go)
}

var _ forward.Forwarder = (*Port)(nil)

// New checks cfg. The device is opened on the first alert, so edgesink
// starts even while it is unplugged.
func New(cfg Config, log *slog.Logger) (*Port, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mode, _ := cfg.Mode()
	tmpl, _ := forward.ParseTemplate(cfg.Template)
	p := &Port{cfg: cfg, mode: mode, tmpl: tmpl.WithSite(cfg.Site), log: log.With("output", "serial", "device", cfg.Device),
		slot: make(chan bugst.Port, 1)}
	p.slot <- nil
	return p, nil
}

// Validate reports the first setting that cannot work; fields left zero
// are taken as their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Device == "" {
		return errors.New("serial: no device given")
	}
	if _, err := c.Mode(); err != nil {
		return err
	}
	if _, err := forward.ParseTemplate(c.Template); err != nil {
		return fmt.Errorf("serial: %w", err)
	}
	if c.MaxLineLength < 8 {
		return fmt.Errorf("serial: max line length %d: want at least 8", c.MaxLineLength)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.Baud, d.Baud)
	setDefault(&c.DataBits, d.DataBits)
	setDefault(&c.Parity, d.Parity)
	setDefault(&c.StopBits, d.StopBits)
	setDefault(&c.Template, d.Template)
	setDefault(&c.MaxLineLength, d.MaxLineLength)
	setDefault(&c.WriteTimeout, d.WriteTimeout)
	return c
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Mode translates the line settings, rejecting impossible ones.
func (c Config) Mode() (*bugst.Mode, error) {
	c = c.withDefaults()
	m := &bugst.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	if c.Baud < 50 || c.Baud > 4000000 {
		return nil, fmt.Errorf("serial: baud %d: out of range", c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		return nil, fmt.Errorf("serial: data bits %d: want 5 to 8", c.DataBits)
	}
	switch strings.ToLower(c.Parity) {
	case "none", "n":
		m.Parity = bugst.NoParity
	case "odd", "o":
		m.Parity = bugst.OddParity
	case "even", "e":
		m.Parity = bugst.EvenParity
	case "mark", "m":
		m.Parity = bugst.MarkParity
	case "space", "s":
		m.Parity = bugst.SpaceParity
	default:
		return nil, fmt.Errorf("serial: parity %q: want none, odd, even, mark or space", c.Parity)
	}
	switch c.StopBits {
	case "1":
		m.StopBits = bugst.OneStopBit
	case "1.5":
		m.StopBits = bugst.OnePointFiveStopBits
	case "2":
		m.StopBits = bugst.TwoStopBits
	default:
		return nil, fmt.Errorf("serial: stop bits %q: want 1, 1.5 or 2", c.StopBits)
	}
	return m, nil
}

// Name implements forward.Forwarder.
func (p *Port) Name() string { return "serial" }

// Line renders a as the bytes written to the port: the template, control
// characters removed, cut to MaxLineLength bytes on a character boundary,
// then CRLF.
func (p *Port) Line(a *sink.Alert) []byte { return p.line(p.tmpl, a) }

func (p *Port) line(tmpl *forward.Template, a *sink.Alert) []byte {
	s := strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, tmpl.Execute(a, nil))
	s = strings.TrimSpace(s)
	for len(s) > p.cfg.MaxLineLength {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return append([]byte(s), '\r', '\n')
}

// Forward writes a's line. It fails with a temporary error when the device
// cannot be opened, the write fails, or the write does not finish in time.
func (p *Port) Forward(ctx context.Context, a *sink.Alert) error {
	return p.write(ctx, p.Line(a))
}

func (p *Port) write(ctx context.Context, line []byte) error {
	var port bugst.Port
	select {
	case port = <-p.slot:
	case <-ctx.Done():
		return sink.MarkTemporary(fmt.Errorf("%w: %w", ErrBusy, ctx.Err()))
	}
	if port == nil {
		var err error
		if port, err = bugst.Open(p.cfg.Device, p.mode); err != nil {
			p.slot <- nil
			return sink.MarkTemporary(fmt.Errorf("serial: open %s: %w", p.cfg.Device, err))
		}
		p.log.Info("serial port opened")
	}

	done := make(chan error, 1)
	go func() {
		// This goroutine owns the port until the write returns, even when
		// Forward gave up waiting: it puts the port (or nil) back itself.
		err := writeAll(port, line)
		if err != nil {
			_ = port.Close()
			p.log.Warn("serial write failed, port closed; reopening on next alert", "err", err)
			p.slot <- nil
		} else {
			p.slot <- port
		}
		done <- err
	}()

	timer := time.NewTimer(p.cfg.WriteTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return sink.MarkTemporary(fmt.Errorf("serial: write %s: %w", p.cfg.Device, err))
		}
		return nil
	case <-timer.C:
		return sink.MarkTemporary(fmt.Errorf("serial: write %s: %w", p.cfg.Device, ErrBusy))
	case <-ctx.Done():
		return sink.MarkTemporary(fmt.Errorf("serial: write %s: %w", p.cfg.Device, ctx.Err()))
	}
}

func writeAll(port bugst.Port, b []byte) error {
	for len(b) > 0 {
		n, err := port.Write(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("device accepted no bytes")
		}
		b = b[n:]
	}
	return nil
}

// Close closes the port if it is open and no write is stuck in it. Safe to
// call twice.
func (p *Port) Close() error {
	select {
	case port := <-p.slot:
		p.slot <- nil
		if port != nil {
			return port.Close()
		}
	default:
	}
	return nil
}
