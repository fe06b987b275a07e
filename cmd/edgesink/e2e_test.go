package main

// End-to-end tests: the real serve() wiring, a real mosquitto broker on a
// free loopback port, a real socat pty pair as the serial device, and mail
// sent over real SMTP by net/smtp, swaks and a raw socket.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/serial/serialtest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/extract/extracttest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// edgesink is one in-process instance under test.
type edgesink struct {
	readyInfo
	stop func() error // cancels serve and waits for it
}

func startEdgesink(t *testing.T, cfg Config) *edgesink {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(smtptest.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan readyInfo, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, func(r readyInfo) { ready <- r }) }()
	e := &edgesink{}
	select {
	case e.readyInfo = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("edgesink not ready after 20s")
	}
	stopped := false
	var result error
	e.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return e
}

func testConfig(t *testing.T, brokerURL, serialDev string) Config {
	cfg := DefaultConfig()
	cfg.SMTP.Listen = Addrs{"127.0.0.1:0"}
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.SMTP.DeliveryTimeout = 5 * time.Second
	cfg.MQTT.Broker = brokerURL
	cfg.MQTT.ClientID = "edgesink-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	cfg.Serial.Device = serialDev
	cfg.Serial.Baud = 115200
	cfg.Serial.MaxLineLength = 1024
	cfg.Spool.Dir = t.TempDir()
	cfg.Spool.RetryMin, cfg.Spool.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cfg.SMTP.ShutdownGrace = 5 * time.Second
	// Load tests send hundreds of mails from 127.0.0.1 over 20 connections;
	// the per-address limits have tests of their own.
	cfg.SMTP.Policy.MaxConnectionsPerIP, cfg.SMTP.Policy.MailsPerMinute = 100, 1_000_000
	// Every mail its own message: these tests check each mail's payload, and
	// several samples are one device's on_battery (folded by coalescing,
	// which has its own tests in forward/spool and the system tests).
	cfg.Coalesce.Disabled = true
	return cfg
}

// e2eCase is one sample mail and what must come out of it. Envelope
// senders and serial lines are written out by hand, independently of the
// code under test.
type e2eCase struct {
	file     string // under testdata/
	mailFrom string
	device   string
	serial   string // line after the timestamp, without CRLF
	rawLF    bool   // send byte-for-byte with bare LF over a raw socket
}

var e2eCases = []e2eCase{
	{"corpus/apc-ups-onbattery.eml", "ups@rack.lan", "ups", "ups UPS On Battery: Smart-UPS 1500 (SN: AS1234567890) at Server Room", false},
	{"corpus/hikvision-motion.eml", "cam-garage@cams.lan", "cam-garage", "cam-garage Motion Detection Alarm: This is an automatically generated e-mail from your DVR.", false},
	{"corpus/hp-printer-toner.eml", "printer@office.lan", "printer", "printer Niveau de toner très bas: Imprimante HP LaserJet M404dn", false},
	{"corpus/synology-volume.eml", "nas@home.lan", "nas", "nas [DiskStation] ボリューム1の空き容量が不足しています ⚠: DiskStationのボリューム1の空き容量が5%未満です。", false},
	{"mail/bare-lf.eml", "plc@factory.lan", "plc", "plc Pump 2 overcurrent: Pump 2 tripped on overcurrent.", true},
	{"mail/broken-multipart.eml", "nvr@cams.lan", "nvr", "nvr Video loss: Video loss on channel 4.", false},
	{"mail/html-windows-1252.eml", "mfp@office.lan", "mfp", "mfp Paper jam – tray 2: “Paper jam” in tray 2 – open door B.", false},
	{"mail/inline-image.eml", "doorbell@cams.lan", "doorbell", "doorbell Someone at the door: Visitor detected", false},
	{"mail/japanese-charsets.eml", "nas@home.lan", "nas", "nas 温度警告: ディスク温度が高すぎます: 61°C", false},
	{"mail/missing-headers.eml", "", "unknown", "unknown Door open: Rear door has been open for 5 minutes.", false},
	{"mail/no-headers.eml", "ups@rack.lan", "ups", "ups : UPS ALERT", false},
	{"mail/raw-8bit-headers.eml", "Camera-Entree@cams.lan", "camera-entree", "camera-entree Détection de mouvement à l'entrée: Mouvement détecté sur la caméra Entrée.", false},
	{"mail/undeclared-8bit.eml", "ups@rack.lan", "ups", "ups Panne: Panne de courant détectée à l'entrée du bâtiment, batterie à 97%. Arrêt prévu dans 41 minutes si le secteur ne revient pas.", false},
	{"mail/unknown-charset.eml", "panel@alarm.lan", "panel", "panel Zone 3 Alarm: Zone 3 « Garage »: alarm triggered", false},
}

const e2eHelo = "edgesink-e2e"

// TestEndToEnd sends every sample over SMTP and checks the exact JSON on
// MQTT (against testdata/e2e/expected.json, written by hand, never by
// -update) and the exact line on the serial port.
func TestEndToEnd(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	pty := serialtest.StartPty(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	es := startEdgesink(t, testConfig(t, broker.URL(), pty.Dev))
	if strings.Join(es.Outputs, ",") != "mqtt(via disk spool),serial(via disk spool)" {
		t.Fatalf("outputs %v", es.Outputs)
	}

	expected := loadE2EExpectations(t)
	for _, tc := range e2eCases {
		if _, ok := expected[filepath.Base(tc.file)]; !ok {
			t.Fatalf("testdata/e2e/expected.json has no entry for %s", tc.file)
		}
	}
	for _, tc := range e2eCases {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("../../testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now().UTC()
			if tc.rawLF {
				if code := sendRawLF(t, es.SMTPAddr, tc.mailFrom, raw); code != 250 {
					t.Fatalf("reply %d, want 250", code)
				}
			} else if err := sendMail(context.Background(), es.SMTPAddr, e2eHelo, tc.mailFrom, []string{"alerts@edgesink.lan"}, raw); err != nil {
				t.Fatalf("send: %v", err)
			}

			msg := sub.Next(t, 10*time.Second, nil)
			if want := "edgesink/" + tc.device + "/alert"; msg.Topic != want {
				t.Errorf("topic %q, want %q", msg.Topic, want)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(msg.Payload), &got); err != nil {
				t.Fatalf("payload: %v\n%s", err, msg.Payload)
			}
			received, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["received_at"]))
			if err != nil || received.Before(before.Add(-time.Second)) || received.After(time.Now().Add(time.Second)) {
				t.Errorf("received_at %v not within the send window", got["received_at"])
			}
			if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(fmt.Sprint(got["id"])) {
				t.Errorf("id %v", got["id"])
			}
			if !strings.HasPrefix(fmt.Sprint(got["remote_addr"]), "127.0.0.1:") {
				t.Errorf("remote_addr %v", got["remote_addr"])
			}

			wantSize := len(raw)
			if tc.rawLF {
				// The wire bytes were bare LF; the sink reads them as CRLF.
				wantSize = len(bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n")))
			}
			checkE2EAlert(t, []byte(msg.Payload), expected[filepath.Base(tc.file)], tc, wantSize)

			line := pty.NextLine(t, 10*time.Second)
			wantLine := received.Format(time.RFC3339) + " " + tc.serial + "\r\n"
			if line != wantLine {
				t.Errorf("serial line\n got %q\nwant %q", line, wantLine)
			}
		})
	}

	t.Run("empty mail is refused, nothing forwarded", func(t *testing.T) {
		raw, _ := os.ReadFile("../../testdata/mail/empty.eml")
		err := sendMail(context.Background(), es.SMTPAddr, e2eHelo, "ghost@nowhere.lan", []string{"a@b"}, raw)
		if err == nil || !strings.Contains(err.Error(), "554") {
			t.Fatalf("got %v, want a 554 refusal", err)
		}
		select {
		case m := <-sub.C():
			t.Errorf("refused mail reached MQTT: %v", m)
		case l := <-pty.Lines():
			t.Errorf("refused mail reached serial: %q", l)
		case <-time.After(300 * time.Millisecond):
		}
	})
}

// e2eExpectation is one entry of testdata/e2e/expected.json: what must
// reach MQTT for a sample, written by hand. Extraction's -update never
// writes it, so re-pinning the golden files cannot re-pin this test.
type e2eExpectation struct {
	Subject      string   `json:"subject"`
	From         []string `json:"from"`
	To           []string `json:"to"`
	TextContains []string `json:"text_contains"`
	HTMLContains []string `json:"html_contains"` // none: html must be empty
	Attachments  []struct {
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Size        int    `json:"size"`
		SHA256      string `json:"sha256"`
	} `json:"attachments"`
	ParseErrors []string `json:"parse_errors"` // one excerpt per entry, in order
	// Event is what sink/classify must decide (written by hand too).
	Event sink.Event `json:"event"`
}

func loadE2EExpectations(t *testing.T) map[string]e2eExpectation {
	t.Helper()
	data, err := os.ReadFile("../../testdata/e2e/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]e2eExpectation
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("testdata/e2e/expected.json: %v", err)
	}
	return m
}

// checkE2EAlert holds one MQTT payload to the hand-written expectation and
// the case's envelope: every field of the alert, no more, no fewer.
func checkE2EAlert(t *testing.T, payload []byte, want e2eExpectation, tc e2eCase, wantSize int) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		t.Fatalf("payload: %v\n%s", err, payload)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"attachments", "device", "event", "from", "helo", "html", "id", "mail_from", "parse_errors",
		"rcpt_to", "received_at", "remote_addr", "size", "subject", "text", "to"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("payload fields %v, want %v", keys, wantKeys)
	}
	var got sink.Alert
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("payload: %v\n%s", err, payload)
	}
	equal := func(field string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", field, got, want)
		}
	}
	equal("subject", got.Subject, want.Subject)
	equal("from", got.From, want.From)
	equal("to", got.To, want.To)
	equal("helo", got.Helo, e2eHelo)
	equal("mail_from", got.MailFrom, tc.mailFrom)
	equal("rcpt_to", got.RcptTo, []string{"alerts@edgesink.lan"})
	equal("device", got.Device, tc.device)
	equal("size", got.Size, wantSize)
	if got.Event == nil {
		t.Errorf("event missing")
	} else {
		equal("event", *got.Event, want.Event)
	}
	for _, s := range want.TextContains {
		if !strings.Contains(got.Text, s) {
			t.Errorf("text does not contain %q:\n%s", s, got.Text)
		}
	}
	if len(want.HTMLContains) == 0 && got.HTML != "" {
		t.Errorf("html = %q, want none", got.HTML)
	}
	for _, s := range want.HTMLContains {
		if !strings.Contains(got.HTML, s) {
			t.Errorf("html does not contain %q:\n%s", s, got.HTML)
		}
	}
	if len(got.Attachments) != len(want.Attachments) {
		t.Errorf("attachments = %+v, want %+v", got.Attachments, want.Attachments)
	} else {
		for i, w := range want.Attachments {
			g := got.Attachments[i]
			if g.Filename != w.Filename || g.ContentType != w.ContentType || g.Size != w.Size || g.SHA256 != w.SHA256 {
				t.Errorf("attachment %d = %+v, want %+v", i, g, w)
			}
		}
	}
	if len(got.ParseErrors) != len(want.ParseErrors) {
		t.Errorf("parse_errors = %q, want %d entries like %q", got.ParseErrors, len(want.ParseErrors), want.ParseErrors)
	} else {
		for i, w := range want.ParseErrors {
			if !strings.Contains(got.ParseErrors[i], w) {
				t.Errorf("parse_errors[%d] = %q, want it to contain %q", i, got.ParseErrors[i], w)
			}
		}
	}
}

// sendRawLF speaks SMTP with bare LF line endings and a LF.LF end of data,
// as some embedded stacks do, and returns the final reply code.
func sendRawLF(t *testing.T, addr, from string, msg []byte) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	reply := func() int {
		var code int
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(line) >= 4 && line[3] == ' ' {
				fmt.Sscanf(line, "%d", &code)
				return code
			}
		}
	}
	reply()
	for _, step := range []struct {
		line string
		code int
	}{{"HELO " + e2eHelo, 250}, {"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<alerts@edgesink.lan>", 250}, {"DATA", 354}} {
		fmt.Fprintf(conn, "%s\n", step.line)
		if got := reply(); got != step.code {
			t.Fatalf("%s: %d, want %d", step.line, got, step.code)
		}
	}
	// Dot-stuffing, as every SMTP client must, even a sloppy one.
	stuffed := regexp.MustCompile(`(?m)^\.`).ReplaceAll(msg, []byte(".."))
	conn.Write(stuffed)
	conn.Write([]byte(".\n"))
	code := reply()
	fmt.Fprintf(conn, "QUIT\n")
	return code
}

// TestSwaks uses swaks, the SMTP test tool many admins reach for, as the
// device, and checks the corpus expectations on what reaches MQTT.
func TestSwaks(t *testing.T) {
	swaks := testtools.RequireTool(t, "swaks")
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	es := startEdgesink(t, testConfig(t, broker.URL(), ""))

	cases := extracttest.LoadCorpus(t, "../../testdata/corpus")
	host, port, _ := net.SplitHostPort(es.SMTPAddr)
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			out, err := exec.Command(swaks, "--server", host, "--port", port, "--helo", "swaks",
				"--from", want.From, "--to", "alerts@edgesink.lan", "--data", "@../../testdata/corpus/"+file).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "<-  250 2.0.0") {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			msg := sub.Next(t, 10*time.Second, nil)
			var a sink.Alert
			if err := json.Unmarshal([]byte(msg.Payload), &a); err != nil {
				t.Fatal(err)
			}
			extracttest.CheckCorpusAlert(t, &a, want)
			if a.Helo != "swaks" || a.MailFrom != want.From {
				t.Errorf("envelope helo %q mail_from %q", a.Helo, a.MailFrom)
			}
		})
	}
}

// TestOutputsDownWithoutSpool: with spool.mode off and the broker stopped
// or the serial device unplugged, devices are told 451 (retry later), never
// 250; once the output is back, the same mail goes through.
func TestOutputsDownWithoutSpool(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	pty := serialtest.StartPty(t)
	cfg := testConfig(t, broker.URL(), pty.Dev)
	cfg.Spool.Mode = spool.ModeOff
	cfg.MQTT.MaxReconnect = time.Second
	es := startEdgesink(t, cfg)
	send := func() (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"send-test", "--server", es.SMTPAddr, "--timeout", "20s"}, &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	if code, out := send(); code != exitOK {
		t.Fatalf("healthy: exit %d: %s", code, out)
	}
	pty.NextLine(t, 5*time.Second)

	broker.Stop()
	if code, out := send(); code != exitRuntime || !strings.Contains(out, "451") {
		t.Fatalf("broker down: exit %d: %s (want 451)", code, out)
	}
	broker.Restart()
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out := send()
		if code == exitOK {
			break
		}
		if !strings.Contains(out, "451") || time.Now().After(deadline) {
			t.Fatalf("after broker restart: exit %d: %s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m := sub.Next(t, 10*time.Second, nil); m.Topic != "edgesink/edgesink-test/alert" {
		t.Errorf("topic %q", m.Topic)
	}

	pty.Unplug()
	var code int
	var out string
	for i := 0; i < 5; i++ { // the first write may still land in the dying pty
		if code, out = send(); code != exitOK {
			break
		}
	}
	if code != exitRuntime || !strings.Contains(out, "451") {
		t.Fatalf("serial unplugged: exit %d: %s (want 451)", code, out)
	}
	pty.Plug()
	if code, out := send(); code != exitOK {
		t.Fatalf("serial back: exit %d: %s", code, out)
	}
	if line := pty.NextLine(t, 5*time.Second); !strings.Contains(line, "edgesink-test edgesink test alert: This is a test alert") {
		t.Errorf("serial line %q", line)
	}
}

// TestEmbeddedBroker is the make-run set-up: no broker configured, edgesink
// runs its own, and a real MQTT client subscribes to it.
func TestEmbeddedBroker(t *testing.T) {
	cfg := testConfig(t, brokerEmbedded, "")
	cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
	es := startEdgesink(t, cfg)
	if es.BrokerAddr == "" {
		t.Fatal("no embedded broker address")
	}
	sub := mqtttest.Subscribe(t, es.BrokerAddr, "edgesink/#")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"send-test", "--server", es.SMTPAddr, "--from", "door-cam@cams.lan"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("send-test: %d %s", code, stderr.String())
	}
	msg := sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return strings.HasSuffix(m.Topic, "/alert") })
	var a sink.Alert
	if err := json.Unmarshal([]byte(msg.Payload), &a); err != nil {
		t.Fatal(err)
	}
	if msg.Topic != "edgesink/door-cam/alert" || a.Subject != "edgesink test alert" || a.Device != "door-cam" {
		t.Errorf("got %s %+v", msg.Topic, a)
	}
}

// TestSwaksRefusals: swaks as a relay-abusing or unknown sender, against
// allow-lists set in the config, gets the exact refusal; then a device on
// the lists gets through.
func TestSwaksRefusals(t *testing.T) {
	swaks := testtools.RequireTool(t, "swaks")
	cfg := testConfig(t, brokerEmbedded, "")
	cfg.MQTT.EmbeddedListen = "127.0.0.1:0"
	cfg.SMTP.Policy.Senders = []string{"@cams.lan"}
	cfg.SMTP.Policy.Recipients = []string{"@edgesink.lan"}
	es := startEdgesink(t, cfg)
	host, port, _ := net.SplitHostPort(es.SMTPAddr)
	for _, tc := range []struct {
		name, from, to, want string
		ok                   bool
	}{
		{"relay attempt", "cam@cams.lan", "victim@example.com", "<** 550 5.7.1 Recipient not allowed here", false},
		{"unknown sender", "spam@example.net", "alerts@edgesink.lan", "<** 550 5.7.1 Sender not allowed here", false},
		{"allowed", "cam@cams.lan", "alerts@edgesink.lan", "<-  250 2.0.0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(swaks, "--server", host, "--port", port, "--from", tc.from, "--to", tc.to,
				"--header", "Subject: test").CombinedOutput()
			if (err == nil) != tc.ok || !strings.Contains(string(out), tc.want) {
				t.Errorf("swaks exit %v, want %q in:\n%s", err, tc.want, out)
			}
		})
	}
}
