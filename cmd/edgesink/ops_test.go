package main

// Operator commands on an installed board, and a port held by another
// process (issue 9, sections 3 and 4); the binary started twice on one
// board is tested in systemtest.

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestPortHolderNamed: a port held by a listener of this test process makes
// edgesink's bind error name this process's PID and command, for the SMTP
// listener and the embedded broker alike, and blame no mosquitto.
func TestPortHolderNamed(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"smtp.listen", func(c *Config) { c.SMTP.Listen = Addrs{held.Addr().String()} }, "smtp: smtp.listen " + held.Addr().String()},
		{"smtp.listen", func(c *Config) { c.SMTP.Listen = Addrs{"127.0.0.1:0", held.Addr().String()} }, "smtp: smtp.listen " + held.Addr().String()},
		{"smtp.tls.listen_implicit", func(c *Config) {
			c.SMTP.TLS = SMTPTLSConfig{ListenImplicit: Addrs{"127.0.0.1:0", held.Addr().String()}, MinVersion: "1.2", Dir: t.TempDir()}
		}, "smtp: smtp.tls.listen_implicit " + held.Addr().String()},
		{"mqtt.embedded_listen", func(c *Config) {
			c.MQTT.Broker, c.MQTT.EmbeddedListen = brokerEmbedded, held.Addr().String()
		}, "start embedded broker: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, brokerEmbedded, "")
			cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
			tt.set(&cfg)
			err := serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
			if err == nil {
				t.Fatal("serve started on a port in use")
			}
			msg := err.Error()
			for _, want := range []string{tt.want, "address already in use", "pid " + strconv.Itoa(os.Getpid()),
				strings.TrimSpace(string(comm)), "set " + tt.name} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "mosquitto") {
				t.Errorf("error blames mosquitto, which does not hold the port:\n%s", msg)
			}
		})
	}
}

// TestSpoolListMissing: listing a spool that does not exist yet says it is
// empty, exits 0 and creates nothing; flags may follow the verb.
func TestSpoolListMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-yet")
	code, out, errOut := runCLI("spool", "list", "--spool-dir", dir)
	if code != exitOK || !strings.Contains(out, "is empty") || errOut != "" {
		t.Errorf("spool list on a missing spool: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("spool list created %s (%v)", dir, err)
	}
}

// TestSpoolDirOfInstalledBoard: from a shell (no STATE_DIRECTORY) on a
// board with the package installed, the spool commands use the service's
// spool: the installed config's spool.dir, else the service's state
// directory, never ~/.local/state.
func TestSpoolDirOfInstalledBoard(t *testing.T) {
	home := t.TempDir()
	tests := []struct {
		name      string
		installed bool   // the package's state directory exists
		config    string // the package's config file, "" for none
		env       map[string]string
		want      func(state, root string) string
	}{
		{"installed, default config", true, "log:\n  level: info\n", nil,
			func(state, _ string) string { return filepath.Join(state, "spool") }},
		{"installed, no config file", true, "", nil,
			func(state, _ string) string { return filepath.Join(state, "spool") }},
		{"installed, spool.dir in config", true, "spool:\n  dir: {root}/elsewhere\n", nil,
			func(_, root string) string { return filepath.Join(root, "elsewhere") }},
		{"under systemd", true, "", map[string]string{"STATE_DIRECTORY": "{root}/sd"},
			func(_, root string) string { return filepath.Join(root, "sd", "spool") }},
		{"not installed", false, "", map[string]string{"HOME": home},
			func(string, string) string { return filepath.Join(home, ".local", "state", "edgesink", "spool") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			h := host{config: filepath.Join(root, "etc", "edgesink.yaml"), stateDir: filepath.Join(root, "var", "lib", "edgesink"),
				getenv: func(k string) string { return strings.ReplaceAll(tt.env[k], "{root}", root) }}
			if tt.installed {
				os.MkdirAll(h.stateDir, 0o750)
			}
			if tt.config != "" {
				os.MkdirAll(filepath.Dir(h.config), 0o755)
				os.WriteFile(h.config, []byte(strings.ReplaceAll(tt.config, "{root}", root)), 0o640)
			}
			var stdout, stderr strings.Builder
			code := runSpool([]string{"list"}, &stdout, &stderr, h)
			want := tt.want(h.stateDir, root)
			if code != exitOK || !strings.Contains(stdout.String(), "spool "+want+" is empty") {
				t.Errorf("spool list: exit %d\n%s%s\nwant it to use %s", code, stdout.String(), stderr.String(), want)
			}
		})
	}
}

// TestCheckConfigFlag: check-config takes the file as --config FILE (as
// install.sh and postinst call it) or as its argument, and says what
// edgesink would do with it.
func TestCheckConfigFlag(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "edgesink.yaml")
	os.WriteFile(conf, []byte("site: lab\nspool:\n  dir: "+dir+"/spool\n"), 0o600)
	hostname, _ := os.Hostname()
	for _, args := range [][]string{{"--config", conf}, {conf}} {
		var stdout, stderr strings.Builder
		code := runCheckConfig(args, &stdout, &stderr, host{getenv: func(string) string { return "" }})
		out := stdout.String()
		for _, want := range []string{conf + ": OK", "listen on 127.0.0.1:2525", "embedded broker on 127.0.0.1:1883",
			"client id edgesink-" + sink.SafeName(hostname) + "-lab", "status on edgesink/lab/status", "alerts to edgesink/lab/{device}/alert",
			"disk, in " + dir + "/spool", filepath.Join(dir, "spool", "lock")} {
			if code != exitOK || !strings.Contains(out, want) {
				t.Errorf("check-config %v: exit %d, lacks %q:\n%s%s", args, code, want, out, stderr.String())
			}
		}
	}
}

// TestSendTestFrom: send-test FILE sends from the file's From: address, so
// the alert names the camera; --from wins; the sample uses its own.
func TestSendTestFrom(t *testing.T) {
	got := make(chan *sink.Alert, 1)
	srv, err := smtpd.New(smtpd.DefaultConfig(), sink.HandlerFunc(func(_ context.Context, a *sink.Alert) error {
		got <- a
		return nil
	}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	hik := "../../testdata/corpus/hikvision-motion.eml"
	tests := []struct {
		args             []string
		mailFrom, device string
	}{
		{[]string{hik}, "cam-garage@cams.lan", "cam-garage"},
		{[]string{"--from", "door@cams.lan", hik}, "door@cams.lan", "door"},
		{[]string{hik, "--from", "door@cams.lan"}, "door@cams.lan", "door"},
		{nil, defaultTestFrom, "edgesink-test"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(append([]string{"send-test", "--server", l.Addr().String()}, tt.args...)...)
		if code != exitOK {
			t.Fatalf("send-test %v: exit %d %s%s", tt.args, code, out, errOut)
		}
		select {
		case a := <-got:
			if a.MailFrom != tt.mailFrom || a.Device != tt.device {
				t.Errorf("send-test %v: mail from %q, device %q; want %q, %q", tt.args, a.MailFrom, a.Device, tt.mailFrom, tt.device)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("send-test %v: no alert", tt.args)
		}
	}
}
