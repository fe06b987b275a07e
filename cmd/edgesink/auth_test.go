package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestSwaksAuth: swaks logs in with PLAIN and LOGIN against every
// auth.mode; the right password gets through (and names the device), a
// wrong one gets 535, no login gets 530 where one is required.
func TestSwaksAuth(t *testing.T) {
	swaks := testtools.RequireTool(t, "swaks")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	type attempt struct {
		mech, user, pass string // mech "" sends no AUTH
		want             string // in swaks' transcript
		ok               bool
	}
	for _, mode := range []struct {
		name     string
		mode     string
		users    bool
		attempts []attempt
	}{
		{"off", "off", false, []attempt{
			{"", "", "", "<-  250 2.0.0", true},
			{"PLAIN", "cam-garage", "s3cret", "Host did not advertise authentication", false},
		}},
		{"optional, no users", "optional", false, []attempt{
			{"", "", "", "<-  250 2.0.0", true},
			{"LOGIN", "anything", "at all", "<-  235 2.0.0", true},
		}},
		{"optional, users", "optional", true, []attempt{
			{"", "", "", "<-  250 2.0.0", true},
			{"PLAIN", "cam-garage", "s3cret", "<-  235 2.0.0", true},
			{"LOGIN", "cam-garage", "wrong", "<** 535 5.7.8", false},
		}},
		{"required", "required", true, []attempt{
			{"", "", "", "<** 530 5.7.0", false},
			{"PLAIN", "cam-garage", "s3cret", "<-  235 2.0.0", true},
			{"LOGIN", "cam-garage", "s3cret", "<-  235 2.0.0", true},
			{"PLAIN", "cam-garage", "wrong", "<** 535 5.7.8", false},
			{"LOGIN", "nobody", "s3cret", "<** 535 5.7.8", false},
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			broker := mqtttest.StartMosquitto(t)
			sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
			cfg := testConfig(t, broker.URL(), "")
			cfg.Auth = smtpd.Auth{Mode: mode.mode, AllowInsecure: true, Users: map[string]string{}}
			if mode.users {
				cfg.Auth.Users["cam-garage"] = string(hash)
			}
			es := startEdgesink(t, cfg)
			host, port, _ := net.SplitHostPort(es.SMTPAddr)
			for _, a := range mode.attempts {
				args := []string{"--server", host, "--port", port, "--from", "printer@office.lan", "--to", "alerts@edgesink.lan",
					"--header", "Subject: auth " + a.mech}
				if a.mech != "" {
					args = append(args, "--auth", a.mech, "--auth-user", a.user, "--auth-password", a.pass)
				}
				out, err := exec.Command(swaks, args...).CombinedOutput()
				if (err == nil) != a.ok || !strings.Contains(string(out), a.want) {
					t.Fatalf("%s as %q: exit %v, want %q in:\n%s", a.mech, a.user, err, a.want, out)
				}
				if strings.Contains(string(out), a.pass+"\n") && a.pass != "" {
					t.Logf("(swaks echoes the password itself; edgesink's log is checked below)")
				}
				if !a.ok {
					continue
				}
				msg := sub.Next(t, 10*time.Second, nil)
				var alert sink.Alert
				if err := json.Unmarshal([]byte(msg.Payload), &alert); err != nil {
					t.Fatal(err)
				}
				want, wantUser := "printer", ""
				if a.mech != "" {
					want, wantUser = sink.SafeName(a.user), a.user
				}
				if alert.Device != want || alert.AuthUser != wantUser {
					t.Errorf("%s as %q: device %q auth_user %q, want %q %q", a.mech, a.user, alert.Device, alert.AuthUser, want, wantUser)
				}
			}
		})
	}
}

// TestNetSMTPAuth: Go's net/smtp client as a second peer (it sends PLAIN
// over plain TCP only to localhost, which this is).
func TestNetSMTPAuth(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	cfg := testConfig(t, brokerEmbedded, "")
	cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
	cfg.Auth = smtpd.Auth{Mode: "required", AllowInsecure: true, Users: map[string]string{"nas": string(hash)}}
	es := startEdgesink(t, cfg)
	_, port, _ := net.SplitHostPort(es.SMTPAddr)
	addr := "localhost:" + port
	msg := []byte("Subject: Volume degraded\r\n\r\nVolume 1 is degraded.\r\n")
	if err := smtp.SendMail(addr, smtp.PlainAuth("", "nas", "s3cret", "localhost"), "nas@home.lan", []string{"alerts@edgesink.lan"}, msg); err != nil {
		t.Errorf("right password: %v", err)
	}
	err := smtp.SendMail(addr, smtp.PlainAuth("", "nas", "wrong", "localhost"), "nas@home.lan", []string{"alerts@edgesink.lan"}, msg)
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("wrong password: %v, want 535", err)
	}
}

// TestHashPassword: the printed hash verifies the password read from stdin
// and is accepted as auth.users in a config.
func TestHashPassword(t *testing.T) {
	in := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(in, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stdout, stderr bytes.Buffer
	if code := runHashPassword(nil, f, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	hash := strings.TrimSpace(stdout.String())
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")) != nil {
		t.Fatalf("hash %q does not verify the password", hash)
	}
	if _, err := ParseConfig([]byte("auth:\n  mode: required\n  users:\n    cam: \"" + hash + "\"\n")); err != nil {
		t.Errorf("config with the hash: %v", err)
	}
	if code := run(context.Background(), []string{"hash-password", "secret"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("password as an argument: exit %d, want %d", code, exitUsage)
	}
}

// TestConfigWithPasswordsNotWorldReadable: a config holding a password is
// refused while other users can read it, and accepted once they cannot.
func TestConfigWithPasswordsNotWorldReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(path, []byte("mqtt:\n  broker: tcp://127.0.0.1:1883\n  password: hunter2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "chmod o-r") {
		t.Fatalf("world-readable config with a password: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("the error message shows the password")
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err != nil {
		t.Errorf("after chmod o-r: %v", err)
	}
	users := "mqtt:\n  embedded_users:\n    ha: {password: \"$2a$10$t8L/udNKJMUlhY1ENvyR.ufkE/uTjou6kQXpbY5usGj5qFBKOV1C.\", role: homeassistant}\n"
	if err := os.WriteFile(path, []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "mqtt.embedded_users") {
		t.Errorf("world-readable config with broker users: %v", err)
	}
	if err := os.WriteFile(path, []byte("smtp:\n  listen: 127.0.0.1:2525\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err != nil {
		t.Errorf("world-readable config without passwords: %v", err)
	}
}

// TestSwaksTLS: swaks with STARTTLS (--tls) and implicit TLS (--tlsc, the
// second listener), against every auth.mode, with AUTH refused in the
// clear (no allow_insecure): over TLS the login works where offered.
func TestSwaksTLS(t *testing.T) {
	swaks := testtools.RequireTool(t, "swaks")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	for _, mode := range []string{"off", "optional", "required"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, brokerEmbedded, "")
			cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
			cfg.Auth = smtpd.Auth{Mode: mode, Users: map[string]string{"cam": string(hash)}}
			cfg.SMTP.TLS = SMTPTLSConfig{StartTLS: true, ListenImplicit: Addrs{"127.0.0.1:0"}, MinVersion: "1.2", Dir: t.TempDir()}
			es := startEdgesink(t, cfg)
			host, port, _ := net.SplitHostPort(es.SMTPAddr)
			_, tlsPort, _ := net.SplitHostPort(es.SMTPSAddr)
			login := mode != "off"
			for _, tc := range []struct {
				name, port, flag string
				auth, ok         bool
				want             string
			}{
				{"STARTTLS with login", port, "--tls", true, login, map[bool]string{true: "<~  235 2.0.0", false: "Host did not advertise authentication"}[login]},
				{"implicit TLS with login", tlsPort, "--tlsc", true, login, map[bool]string{true: "<~  235 2.0.0", false: "Host did not advertise authentication"}[login]},
				{"STARTTLS without login", port, "--tls", false, mode != "required", map[bool]string{true: "<~  250 2.0.0", false: "<~* 530 5.7.0"}[mode != "required"]},
				{"login in the clear", port, "", true, false, "Host did not advertise authentication"},
			} {
				args := []string{"--server", host, "--port", tc.port, "--from", "cam@cams.lan", "--to", "alerts@edgesink.lan"}
				if tc.auth {
					args = append(args, "--auth", "PLAIN", "--auth-user", "cam", "--auth-password", "s3cret")
				}
				if tc.flag != "" {
					args = append(args, tc.flag)
				}
				out, err := exec.Command(swaks, args...).CombinedOutput()
				if (err == nil) != tc.ok || !strings.Contains(string(out), tc.want) {
					t.Errorf("%s: exit %v, want %q in:\n%s", tc.name, err, tc.want, out)
				}
			}
		})
	}
}
