// Command edgesink is a tiny SMTP server for old devices that can only report
// trouble by e-mail: it turns each alert mail into an MQTT message and/or a
// line on a serial port, and never relays mail onward.
//
// This file holds the command line only: subcommands, flags, exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/edgesink/edgesink/board"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink/classify"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes: 2 means "fix your command line or config", 1 "something failed
// at run time". The systemd unit does not restart on 2.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `edgesink - an SMTP sink that bridges device alert mail to MQTT and serial

Usage:
  edgesink [serve] [flags]          run the sink (the default)
  edgesink check-config [--config] FILE
                                    validate a config file, say what it would do
  edgesink send-test [flags] [FILE] send a sample alert (or FILE.eml) to a running sink
  edgesink classify [flags] FILE.eml
                                    print the alert JSON a mail would become (device, event)
  edgesink spool list|show|retry|drop [ID] [flags]
                                    look at and act on alerts waiting in the spool
  edgesink devices list|forget [NAME] [flags]
                                    the devices announced to Home Assistant
  edgesink hash-password            read a password, print its bcrypt hash for auth.users
  edgesink board                    show the board edgesink detects here
  edgesink version                  print version information

Run 'edgesink COMMAND --help' for the flags of a command.
With no config file edgesink listens for SMTP on 127.0.0.1:2525 and
publishes alerts to an embedded MQTT broker on 127.0.0.1:1883.
`

// run is main without the process: tests drive it with their own arguments.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stdout, stderr)
	case "check-config":
		return runCheckConfig(args, stdout, stderr, systemHost())
	case "send-test":
		return runSendTest(ctx, args, stdout, stderr)
	case "classify":
		return runClassify(args, stdout, stderr, systemHost())
	case "board":
		return runBoard(args, stdout, stderr)
	case "hash-password":
		return runHashPassword(args, os.Stdin, stdout, stderr)
	case "spool":
		return runSpool(args, stdout, stderr, systemHost())
	case "devices":
		return runDevices(args, stdout, stderr, systemHost())
	case "version":
		fmt.Fprintf(stdout, "edgesink %s (commit %s) %s/%s %s\n", version, commit, runtime.GOOS, runtime.GOARCH, runtime.Version())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "edgesink: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
}

// flagSet is one command's flags. Help asked for (-h, --help) goes to
// stdout with exit 0; a mistake goes to stderr with exit 2. Flags and
// arguments may come in any order (spool list --spool-dir X); after "--"
// everything is an argument.
type flagSet struct {
	*flag.FlagSet
	synopsis       string
	stdout, stderr io.Writer
	args           []string
}

func newFlagSet(name, synopsis string, stdout, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parse prints it, to the stream that fits
	return &flagSet{FlagSet: fs, synopsis: synopsis, stdout: stdout, stderr: stderr}
}

func (f *flagSet) printUsage(w io.Writer) {
	if strings.Contains(f.synopsis, "\n") {
		fmt.Fprint(w, f.synopsis) // a whole help text
	} else {
		fmt.Fprintf(w, "Usage: %s\n\nFlags:\n", f.synopsis)
	}
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(f.stderr)
}

// usageError prints the usage to stderr and returns the usage exit code.
func (f *flagSet) usageError() int {
	f.printUsage(f.stderr)
	return exitUsage
}

// parse parses args; the int is the exit code when the caller should stop
// (help was asked for, or the flags were wrong).
func (f *flagSet) parse(args []string) (bool, int) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	f.args = nil
	for {
		if err := f.FlagSet.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printUsage(f.stdout)
				return false, exitOK
			}
			return false, f.usageError()
		}
		args = f.FlagSet.Args()
		if len(args) == 0 {
			break
		}
		f.args, args = append(f.args, args[0]), args[1:]
	}
	f.args = append(f.args, tail...)
	return true, exitOK
}

// Args are the arguments left after the flags.
func (f *flagSet) Args() []string { return f.args }

// NArg is len(Args()).
func (f *flagSet) NArg() int { return len(f.args) }

// Arg is the i-th argument, "" if there is none.
func (f *flagSet) Arg(i int) string {
	if i < len(f.args) {
		return f.args[i]
	}
	return ""
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// serve is the default command, so its help is the program's help.
	fs := newFlagSet("serve", usageText+"\nFlags of serve:\n", stdout, stderr)
	configPath := fs.String("config", "", "YAML config `file` (default: built-in defaults)")
	var smtpListen addrsFlag
	fs.Var(&smtpListen, "smtp-listen", "SMTP listen `address`, e.g. 0.0.0.0:25; repeat for more ports (config smtp.listen)")
	mqttBroker := fs.String("mqtt-broker", "", "MQTT broker: tcp://host:port, ssl://host:port, embedded or none (config mqtt.broker)")
	mqttTopic := fs.String("mqtt-topic", "", "MQTT topic `template`, e.g. edgesink/{device}/alert (config mqtt.topic)")
	serialDevice := fs.String("serial-device", "", "serial output `device`, e.g. /dev/serial0 (config serial.device)")
	serialBaud := fs.Int("serial-baud", 0, "serial baud `rate` (config serial.baud)")
	spoolDir := fs.String("spool-dir", "", "spool `directory` (config spool.dir; default: the state directory)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn, error (config log.level)")
	httpListen := fs.String("http-listen", "", "status page `address`, e.g. 0.0.0.0:8025, or none (config http.listen)")
	if ok, code := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "edgesink serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}

	cfg, err := configFrom(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink: %v\n", err)
		return exitUsage
	}
	cfg.path = *configPath
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "smtp-listen":
			cfg.SMTP.Listen = smtpListen.addrs
		case "mqtt-broker":
			cfg.MQTT.Broker = *mqttBroker
		case "mqtt-topic":
			cfg.MQTT.Topic = *mqttTopic
		case "serial-device":
			cfg.Serial.Device = *serialDevice
		case "serial-baud":
			cfg.Serial.Baud = *serialBaud
		case "spool-dir":
			cfg.Spool.Dir = *spoolDir
		case "log-level":
			cfg.Log.Level = *logLevel
		case "http-listen":
			cfg.HTTP.Listen = *httpListen
		}
	})
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "edgesink: config: %v\n", err)
		return exitUsage
	}

	log := newLogger(cfg.Log, stderr)
	if err := serve(ctx, cfg, log, nil); err != nil {
		log.Error("edgesink stopped", "err", err)
		var ce *configError
		if errors.As(err, &ce) {
			return exitUsage
		}
		return exitRuntime
	}
	return exitOK
}

// configFrom loads the config file at path, or the defaults when path is "".
func configFrom(path string) (Config, error) {
	if path == "" {
		return DefaultConfig(), nil
	}
	cfg, err := LoadConfig(path)
	cfg.path = path // SIGHUP reads the routing rules, devices map and templates from it again
	return cfg, err
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

const checkConfigUsage = `Usage: edgesink check-config [--config] FILE

Validates FILE as edgesink would at start (naming the line of the first
problem, exit 2) and prints what edgesink would do with it: where it
listens, where alerts go, where the spool and its lock are.

Flags:
`

func runCheckConfig(args []string, stdout, stderr io.Writer, h host) int {
	fs := newFlagSet("check-config", checkConfigUsage, stdout, stderr)
	configPath := fs.String("config", "", "config `file` to check (or give it as the argument)")
	if ok, code := fs.parse(args); !ok {
		return code
	}
	path := *configPath
	switch {
	case path == "" && fs.NArg() == 1:
		path = fs.Arg(0)
	case path == "" || fs.NArg() != 0:
		return fs.usageError()
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink: %v\n", err)
		return exitUsage
	}
	var warning string
	if cfg.MQTT.Broker == brokerEmbedded {
		dir := cliLockDir(cfg, h)
		if warning, err = brokerAnonymity(cfg.MQTT.embedded(), dir, earlierStart(dir), false); err != nil {
			fmt.Fprintf(stderr, "edgesink: %s: mqtt.embedded_listen: %v\n", path, err)
			return exitUsage
		}
	}
	fmt.Fprintf(stdout, "%s: OK\n", path)
	describeConfig(stdout, cfg, h)
	if warning != "" {
		fmt.Fprintf(stdout, "  WARNING: %s\n", warning)
	}
	return exitOK
}

// cliLockDir is the instance directory (where the lock is) the service
// uses with cfg, as an operator command finds it.
func cliLockDir(cfg Config, h host) string {
	if cfg.Spool.Mode == spool.ModeDisk {
		if scfg, err := spoolConfigIn(cfg.Spool, h.cliStateDir); err == nil {
			return scfg.Dir
		}
	}
	if cfg.Spool.Dir != "" {
		return cfg.Spool.Dir
	}
	d, _ := h.cliStateDir()
	return d
}

// describeConfig says, in a few lines, what edgesink would do with cfg.
func describeConfig(w io.Writer, cfg Config, h host) {
	smtps := ""
	if len(cfg.SMTP.TLS.ListenImplicit) > 0 {
		smtps = ", SMTPS on " + cfg.SMTP.TLS.ListenImplicit.String()
	}
	fmt.Fprintf(w, "  smtp:   listen on %s%s (STARTTLS %s), login %s\n", cfg.SMTP.Listen, smtps, onOff(cfg.SMTP.TLS.StartTLS), cfg.Auth.Mode)
	if cfg.Site != "" {
		fmt.Fprintf(w, "  site:   %s\n", cfg.Site)
	}
	switch cfg.MQTT.Broker {
	case brokerNone:
		fmt.Fprintln(w, "  mqtt:   off")
	default:
		broker := cfg.MQTT.Broker
		if broker == brokerEmbedded {
			broker = "embedded broker on " + cfg.MQTT.EmbeddedListen
			if l := cfg.MQTT.Embedded.TLS.Listen; l != "" {
				broker += " (TLS on " + l + ")"
			}
			switch e := cfg.MQTT.Embedded; {
			case len(e.Users) > 0 && e.AllowAnonymous:
				broker += fmt.Sprintf(", %d users, anonymous clients read", len(e.Users))
			case len(e.Users) > 0:
				broker += fmt.Sprintf(", %d users", len(e.Users))
			default:
				broker += ", no users (every client may do anything)"
			}
		}
		pcfg := cfg.mqttIdentity()
		status := pcfg.AvailabilityTopic
		if status == "" {
			status = "off"
		}
		fmt.Fprintf(w, "  mqtt:   %s, alerts to %s, client id %s, status on %s\n", broker, pcfg.Topic, pcfg.ClientID, status)
		if cfg.homeAssistant() {
			fmt.Fprintf(w, "  hass:   Home Assistant discovery under %s/, snapshots %s\n", cfg.HomeAssistant.DiscoveryPrefix, cfg.Snapshots.Store)
		} else {
			fmt.Fprintln(w, "  hass:   off")
		}
	}
	if cfg.Serial.Device != "" {
		dev, _ := serialDevice(cfg.Serial)
		fmt.Fprintf(w, "  serial: %s at %d baud, line %q\n", dev, cfg.Serial.Baud, cfg.Serial.Template)
	} else {
		fmt.Fprintln(w, "  serial: off")
	}
	switch {
	case !cfg.HTTP.Enabled():
		fmt.Fprintln(w, "  http:   off")
	case cfg.HTTP.NeedsLogin():
		fmt.Fprintf(w, "  http:   status page on %s, login needed (%d users; none: admin, password logged at first start)\n", cfg.HTTP.Listen, len(cfg.HTTP.Users))
	default:
		fmt.Fprintf(w, "  http:   status page on %s, no login\n", cfg.HTTP.Listen)
	}
	lock := cfg.Spool.Dir
	if cfg.Spool.Mode == spool.ModeDisk {
		scfg, err := spoolConfigIn(cfg.Spool, h.cliStateDir)
		if err != nil {
			fmt.Fprintf(w, "  spool:  disk, directory unknown: %v\n", err)
			return
		}
		lock = scfg.Dir
		fmt.Fprintf(w, "  spool:  disk, in %s\n", scfg.Dir)
	} else {
		fmt.Fprintf(w, "  spool:  %s\n", cfg.Spool.Mode)
	}
	if lock == "" {
		lock, _ = h.cliStateDir()
	}
	fmt.Fprintf(w, "  lock:   %s (one edgesink per spool)\n", filepath.Join(lock, spool.LockName))
	fmt.Fprintf(w, "  events: %d templates of yours before the %d built-in ones, %d devices named by the devices map\n",
		len(cfg.Classify.Templates), len(classify.BuiltinTemplates()), len(cfg.Classify.Devices))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func runBoard(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("board", "edgesink board", stdout, stderr)
	if ok, code := fs.parse(args); !ok {
		return code
	}
	p, model, known := board.Detect()
	if model == "" {
		model = "(no " + board.DeviceTreeModel + ")"
	}
	fmt.Fprintf(stdout, "model:         %s\nprofile:       %s (%s)\nknown board:   %t\ntarget:        %s/%s", model, p.Name, p.Description, known, p.GOOS, p.GOARCH)
	if p.GOARM != "" {
		fmt.Fprintf(stdout, " GOARM=%s", p.GOARM)
	}
	fmt.Fprintf(stdout, "\nserial device: %s\nactivity LED:  %s\nstate dir:     %s\n", orNone(p.SerialDevice), orNone(p.LED), p.StateDir)
	return exitOK
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
