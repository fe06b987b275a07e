package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgesink/edgesink/board"
	"github.com/edgesink/edgesink/board/procnet"
	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/broker"
	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/route"
	"github.com/edgesink/edgesink/forward/serial"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/status"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/classify"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// configError is a start-up failure the user must fix in the config; it
// exits with code 2 so systemd does not restart in a loop.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// readyInfo tells tests (and the log) where edgesink ended up listening.
type readyInfo struct {
	SMTPAddr      string   // the first of SMTPAddrs
	SMTPAddrs     []string // every plain/STARTTLS listener, in smtp.listen's order
	SMTPSAddr     string   // the first implicit TLS listener, "" if none
	SMTPSAddrs    []string // every implicit TLS listener
	HTTPAddr      string   // status page, "" if none
	BrokerAddr    string   // embedded broker, "" if none
	BrokerTLSAddr string   // embedded broker's TLS listener, "" if none
	Outputs       []string
}

// serve wires the sink to its outputs and runs until ctx ends, then drains:
// mail in transfer is finished and answered, outputs are closed last.
// ready, if not nil, is called once everything listens.
//
// It starts in an order that lets a second instance fail before it can
// disturb the first: the instance lock, then the SMTP ports, then the
// embedded broker, the MQTT connection, the spool.
func serve(ctx context.Context, cfg Config, log *slog.Logger, ready func(readyInfo)) (err error) {
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil {
				log.Warn("close failed", "err", cerr)
			}
		}
	}()
	info := readyInfo{}

	// 'edgesink spool retry' signals the PID in the lock file as soon as it
	// is written; SIGHUP's default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// First the lock, before anything is opened, bound or connected: a
	// second instance on the same spool stops here, naming the first.
	lockDir, err := cfg.lockDir()
	if err != nil {
		return &configError{err}
	}
	// An open broker on the LAN is a config error (exit 2), decided before
	// the lock file is made: a refused start must not make the next one
	// look like an upgraded board (brokerAnonymity).
	allowOpen := false
	if cfg.MQTT.Broker == brokerEmbedded {
		warning, err := brokerAnonymity(cfg.MQTT.embedded(), lockDir, earlierStart(lockDir), true)
		if err != nil {
			return &configError{err}
		}
		if warning != "" {
			log.Warn(warning, "listen", cfg.MQTT.EmbeddedListen)
			allowOpen = true
		}
	}
	lock, err := spool.AcquireLock(lockDir)
	if err != nil {
		var le *spool.LockedError
		if errors.As(err, &le) {
			return fmt.Errorf("%w: refusing to run a second edgesink on the same spool "+
				"(stop that one, or give this one its own spool.dir, site and ports)", err)
		}
		return err
	}
	closers = append(closers, lock.Close)

	// The embedded broker's logins and rights: the output's credential is
	// the instance's, so it is made under the lock.
	var bcfg broker.Config
	var brokerCert *smtpd.Certificate
	if cfg.MQTT.Broker == brokerEmbedded {
		if bcfg, brokerCert, err = cfg.embeddedBroker(lockDir, allowOpen, log); err != nil {
			return err
		}
	}

	// Then the ports, before the broker connection: an instance that cannot
	// have them must not take the MQTT client id of one that has, nor leave
	// "offline" on its status topic on the way out.
	plain, implicit, err := bindSMTP(cfg.SMTP)
	if err != nil {
		return err
	}
	for _, l := range implicit {
		info.SMTPSAddrs = append(info.SMTPSAddrs, l.Addr().String())
	}
	if len(implicit) > 0 {
		info.SMTPSAddr = info.SMTPSAddrs[0]
	}
	serving := false // from then on the sink server closes the listeners
	closers = append(closers, func() error {
		if !serving {
			closeAll(plain)
			closeAll(implicit)
		}
		return nil
	})

	setMemoryLimit(cfg, log)

	var outputs []forward.Forwarder
	var mqttTopic, mqttClientID string
	var ha *homeAssistantRun // nil unless Home Assistant discovery runs
	var embedded *broker.Broker
	brokerURL := cfg.MQTT.Broker
	if brokerURL == brokerEmbedded {
		b, err := broker.Start(bcfg, log)
		if err != nil {
			if errors.Is(err, broker.ErrOpenOnLAN) {
				return &configError{err}
			}
			return fmt.Errorf("start embedded broker: %w", portInUse(err, cfg.MQTT.EmbeddedListen, "mqtt.embedded_listen"))
		}
		closers = append(closers, b.Close)
		embedded = b
		brokerURL, info.BrokerAddr, info.BrokerTLSAddr = b.URL(), b.Addr(), b.TLSAddr()
		log.Info("embedded MQTT broker listening", "addr", b.Addr(), "tls_addr", b.TLSAddr(), "users", len(bcfg.Users))
	}
	if brokerURL != brokerNone {
		pcfg, err := cfg.MQTT.publisherConfig(brokerURL, cfg.Site)
		if err != nil {
			return &configError{fmt.Errorf("mqtt: %w", err)}
		}
		if cfg.MQTT.Broker == brokerEmbedded {
			pcfg.Username, pcfg.Password = broker.PublisherUser, bcfg.PublisherPassword
		}
		pub, err := mqtt.New(pcfg, log)
		if err != nil {
			return &configError{err}
		}
		mqttTopic, mqttClientID = pub.Config().Topic, pub.Config().ClientID
		closers = append(closers, pub.Close)
		var out forward.Forwarder = pub
		if cfg.homeAssistant() {
			if ha, err = startHomeAssistant(cfg, pub, lockDir, log); err != nil {
				return err
			}
			closers = append(closers, ha.close)
			out = ha.output // the MQTT output, with Home Assistant's messages
		}
		outputs = append(outputs, out)
		// Without a spool, being connected before the first device mails
		// avoids a needless 451; a broker that is down must not keep the
		// sink from starting. With a spool nothing waits: alerts are taken
		// and wait in it (the publisher logs its connection attempts).
		if cfg.Spool.Mode == spool.ModeOff {
			wctx, cancel := context.WithTimeout(ctx, min(cfg.MQTT.ConnectTimeout, 5*time.Second))
			if err := pub.WaitConnected(wctx); err != nil {
				log.Warn("MQTT broker not reachable yet; devices get 451 until it is", "broker", brokerURL)
			}
			cancel()
		}
	}
	if cfg.Serial.Device != "" {
		pcfg := portConfig(cfg.Serial)
		pcfg.Site = cfg.Site // {site} in serial templates
		port, err := serial.New(pcfg, log)
		if err != nil {
			return &configError{err}
		}
		closers = append(closers, port.Close)
		outputs = append(outputs, port)
	}
	if len(outputs) == 0 {
		return &configError{errors.New("no output configured: set mqtt.broker or serial.device")}
	}

	// The stages after extraction, in the order a mail takes: classify
	// (what happened), then the spool, the one delivery engine, whose
	// answer the device gets (250 once the alert is stored or, with
	// spool.mode off, once every output confirmed it).
	spcfg, err := spoolConfig(cfg.Spool)
	if err != nil {
		return &configError{fmt.Errorf("spool: %w", err)}
	}
	routes, err := cfg.routes()
	if err != nil {
		return &configError{fmt.Errorf("routes: %w", err)}
	}
	// The status page watches from three places: each output (deliveries),
	// a stage before the queue (alerts and their raw mail), the spool's
	// dead letters.
	var recorder *status.Recorder
	delivering := outputs
	if cfg.HTTP.Enabled() {
		recorder = status.NewRecorder(cfg.HTTP)
		delivering = make([]forward.Forwarder, len(outputs))
		for i, o := range outputs {
			delivering[i] = recorder.Output(o)
		}
	}
	sp, err := spool.Open(cfg.spoolWith(spcfg), log, delivering...)
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	closers = append(closers, sp.Close)
	sp.SetRouter(routes)
	var queue sink.Handler = sp
	if recorder != nil {
		recorder.SetSpoolDir(sp.Dir())
		sp.OnDeadLetter(recorder.DeadLetter)
		sp.OnDecided(recorder.Decided)
		queue = recorder.Handler(sp)
	}
	// The snapshot stage takes images out of alerts before they are
	// queued (without Home Assistant it only drops their bytes).
	var snaps *hass.Snapshots
	if ha != nil {
		snaps = ha.snaps
		ha.setStats(sp)
	}
	classifier, err := classify.Load(cfg.Classify)
	if err != nil {
		return &configError{err}
	}
	stage := classify.New(snaps.Stage(queue), classifier)
	var handler sink.Handler = stage
	if spcfg.Mode == spool.ModeDisk {
		log.Info("spool ready", "dir", spcfg.Dir, "holds", sp.Stats().String())
	}
	if spcfg.Mode == spool.ModeMemory {
		// What a memory spool holds lives only here: 'edgesink spool list'
		// asks over a socket beside the lock (we hold the lock, so a file
		// left there by a crash is stale).
		path := filepath.Join(lockDir, spool.ControlName)
		_ = os.Remove(path)
		cl, err := net.Listen("unix", path)
		if err != nil {
			return fmt.Errorf("spool: control socket: %w", err)
		}
		closers = append(closers, cl.Close)
		go func() {
			if err := sp.ServeControl(cl); err != nil {
				log.Warn("spool control socket stopped", "err", err)
			}
		}()
	}
	if cfg.Board.LED == board.LEDActivity {
		led, err := openLED(cfg.Board, log)
		if err != nil {
			return err
		}
		closers = append(closers, led.Close)
		handler = blinking{handler, led}
	}
	scfg := cfg.sinkConfig()
	var cert *smtpd.Certificate
	if cfg.SMTP.TLS.enabled() {
		var created bool
		if cert, created, err = cfg.SMTP.TLS.certificate(cfg.SMTP.Domain); err != nil {
			return fmt.Errorf("smtp tls: %w", err)
		}
		minVersion, _ := smtpd.ParseTLSVersion(cfg.SMTP.TLS.MinVersion)
		scfg.TLS = cert.TLSConfig(minVersion)
		msg := "TLS certificate loaded"
		if created {
			msg = "TLS: created a self-signed certificate; pin its fingerprint on devices that ask"
		}
		log.Info(msg, "sha256_fingerprint", cert.Fingerprint(), "min_version", cfg.SMTP.TLS.MinVersion)
	}
	srv, err := smtpd.New(scfg, handler, log)
	if err != nil {
		return &configError{err}
	}
	for _, l := range plain {
		info.SMTPAddrs = append(info.SMTPAddrs, l.Addr().String())
	}
	info.SMTPAddr, info.Outputs = info.SMTPAddrs[0], sp.Outputs()

	var page *statusPage
	var smtpUp atomic.Bool
	if recorder != nil {
		srv.Observe(recorder.Metrics())
		deps := status.Deps{Recorder: recorder, Queue: sp, Outputs: outputs, Replay: replayer(handler),
			SMTPListening: smtpUp.Load,
			Info:          status.Info{Version: version, ConfigPath: cfg.path, Listening: listening(info)}}
		if spcfg.Mode == spool.ModeOff {
			deps.Queue = nil
		}
		if embedded != nil {
			deps.Broker = embedded
		}
		if ha != nil {
			deps.Devices = registryDevices{reg: ha.output.Registry(), rec: recorder}
			deps.Snapshots = ha.snaps
		}
		if page, err = startStatusPage(cfg, deps, cert, lockDir, log); err != nil {
			return err
		}
		info.HTTPAddr = page.addr
		closers = append(closers, page.srv.Close)
	}

	// Every listener is bound (the kernel queues connections from now
	// on) before systemd hears "ready".
	serving = true
	smtpUp.Store(true)
	served := make(chan error, len(plain)+len(implicit))
	for _, l := range plain {
		go func() { served <- srv.Serve(l) }()
	}
	for _, l := range implicit {
		go func() { served <- srv.ServeTLS(l) }()
	}
	log.Info("edgesink ready", "version", version, "smtp", strings.Join(info.SMTPAddrs, ","), "smtps", strings.Join(info.SMTPSAddrs, ","), "http", info.HTTPAddr, "starttls", cfg.SMTP.TLS.StartTLS, "outputs", info.Outputs,
		"mqtt_broker", brokerURL, "mqtt_topic", mqttTopic, "mqtt_client_id", mqttClientID, "serial_device", cfg.Serial.Device)
	if ready != nil {
		ready(info)
	}
	if err := sdNotify("READY=1\nSTATUS=accepting mail on " + strings.Join(append(info.SMTPAddrs, info.SMTPSAddrs...), ", ")); err != nil {
		log.Warn("could not tell systemd we are ready", "err", err)
	}

	for running := true; running; {
		select {
		case err := <-served:
			_ = srv.Close()
			return err
		case <-hup:
			n, err := sp.Rescan()
			log.Info("SIGHUP: spool rescanned", "new_alerts", n, "holds", sp.Stats().String(), "err", err)
			reloadRoutes(cfg, sp, log)
			if cert != nil {
				if err := cert.Reload(); err != nil {
					log.Error("SIGHUP: TLS certificate not reloaded, keeping the old one", "err", err)
				} else {
					log.Info("SIGHUP: TLS certificate reloaded", "sha256_fingerprint", cert.Fingerprint())
				}
			}
			reloadClassify(cfg.path, stage, log)
			if page != nil && page.cert != nil {
				if err := page.cert.Reload(); err != nil {
					log.Error("SIGHUP: status page's TLS certificate not reloaded, keeping the old one", "err", err)
				}
			}
			if brokerCert != nil {
				if err := brokerCert.Reload(); err != nil {
					log.Error("SIGHUP: embedded broker's TLS certificate not reloaded, keeping the old one", "err", err)
				} else {
					log.Info("SIGHUP: embedded broker's TLS certificate reloaded", "sha256_fingerprint", brokerCert.Fingerprint())
				}
			}
		case <-ctx.Done():
			running = false
		}
	}
	grace := cfg.SMTP.ShutdownGrace
	_ = sdNotify("STOPPING=1\nSTATUS=finishing mail in transfer")
	log.Info("shutting down: finishing mail in transfer", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown grace period over, connections closed", "err", err)
	}
	for range len(plain) + len(implicit) {
		<-served
	}
	smtpUp.Store(false)
	if page != nil {
		_ = page.srv.Shutdown(sctx)
	}
	// Deliver what can be delivered in the rest of the grace period; what
	// is left stays in the spool for the next start.
	if err := sp.Drain(sctx); err != nil {
		n, _ := sp.Len()
		log.Info("stopping with alerts still queued", "count", n, "holds", sp.Stats().String())
	}
	log.Info("edgesink stopped")
	return nil
}

// reloadRoutes reads the routing rules from the config file again and
// makes them decide for new mail; queued alerts keep their routes. Rules
// are checked against the outputs this process runs with; a file that does
// not load keeps the rules in force (reloadClassify reads the devices map and
// templates from it too).
func reloadRoutes(cfg Config, sp *spool.Spool, log *slog.Logger) {
	if cfg.path == "" {
		return
	}
	next, err := LoadConfig(cfg.path)
	if err == nil {
		cfg.Routes = next.Routes
		var table *route.Table
		if table, err = cfg.routes(); err == nil {
			sp.SetRouter(table)
			log.Info("SIGHUP: routing rules reloaded for new mail", "rules", table.Len())
			return
		}
	}
	log.Error("SIGHUP: routing rules not reloaded, keeping those in force", "err", err)
}

// bindSMTP binds every SMTP listener, plain (with STARTTLS) and implicit
// TLS. If any address cannot be had, none is kept: the error names the
// address, its setting and, for a taken port, what holds it.
func bindSMTP(c SMTPConfig) (plain, implicit []net.Listener, err error) {
	for _, set := range []struct {
		addrs Addrs
		key   string
		into  *[]net.Listener
	}{{c.Listen, "smtp.listen", &plain}, {c.TLS.ListenImplicit, "smtp.tls.listen_implicit", &implicit}} {
		for _, addr := range set.addrs {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				closeAll(plain)
				closeAll(implicit)
				return nil, nil, fmt.Errorf("smtp: %s %s: %w", set.key, addr, portInUse(err, addr, set.key))
			}
			*set.into = append(*set.into, l)
		}
	}
	return plain, implicit, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// reloadClassify reads the devices map and templates from file again and
// gives them to the classify stage; a file that does not load keeps the
// old ones. Alerts already queued keep the device and event they were
// given.
func reloadClassify(file string, stage *classify.Stage, log *slog.Logger) {
	if file == "" {
		return
	}
	cfg, err := LoadConfig(file)
	if err != nil {
		log.Error("SIGHUP: config not reloaded, keeping the devices map and templates", "err", err)
		return
	}
	c, err := classify.Load(cfg.Classify)
	if err != nil { // LoadConfig validated it; only a race with an edit gets here
		log.Error("SIGHUP: config not reloaded, keeping the devices map and templates", "err", err)
		return
	}
	stage.Swap(c)
	log.Info("SIGHUP: devices map and templates reloaded", "devices", len(cfg.Classify.Devices), "templates", len(cfg.Classify.Templates))
}

// portInUse adds to a bind error on addr what holds the port, when the
// port is taken: the PID and command when this user can see them, else
// whose process it is and the command that shows it. key is the setting
// that moves this listener.
func portInUse(err error, addr, key string) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	host, p, _ := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(p)
	if perr != nil {
		return err
	}
	h, herr := procnet.Listener(net.ParseIP(host), port)
	if herr != nil {
		return fmt.Errorf("%w (port %d is taken; see what holds it with: %s; or set %s)", err, port, procnet.SSCommand(port), key)
	}
	hint := "stop it, or set " + key
	switch h.Comm {
	case "mosquitto":
		if key == "mqtt.embedded_listen" {
			hint = fmt.Sprintf("a system mosquitto: publish to it with --mqtt-broker tcp://%s (mqtt.broker), or stop it", addr)
		}
	case "edgesink":
		hint = "another edgesink: give each instance its own site, spool.dir and ports, or stop it"
	}
	return fmt.Errorf("%w: port %d is held by %s (%s)", err, port, h, hint)
}

// openLED takes over the board's activity LED for board.led: activity.
func openLED(cfg BoardConfig, log *slog.Logger) (*board.LED, error) {
	path, err := cfg.ledPath()
	if err != nil {
		return nil, &configError{err}
	}
	led, err := board.OpenLED(path)
	if err != nil {
		return nil, fmt.Errorf("%w (board.led: activity needs write access to the LED; the systemd unit grants it)", err)
	}
	log.Info("activity LED flashes once per accepted alert", "led", path)
	return led, nil
}

// blinking flashes the LED for each alert its handler accepted.
type blinking struct {
	handler sink.Handler
	led     *board.LED
}

func (b blinking) Handle(ctx context.Context, a *sink.Alert) error {
	err := b.handler.Handle(ctx, a)
	if err == nil {
		b.led.Blink()
	}
	return err
}

// setMemoryLimit gives the Go runtime a soft memory limit that fits the
// configured budget: mail in transfer (smtp.max_memory), as much again for
// parsing, the queue (spool.max_size), plus room for the runtime. Without
// it the collector lets the heap grow to twice what is live, which on a Pi
// Zero is the difference between fitting and not. GOMEMLIMIT, when set,
// wins.
func setMemoryLimit(cfg Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := 2*int64(cfg.SMTP.MaxMemory) + int64(cfg.Spool.MaxBytes) + 32<<20
	debug.SetMemoryLimit(limit)
	log.Debug("Go memory limit set", "bytes", limit)
}
