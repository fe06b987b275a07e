package main

// Durability tests with real faults: a stopped or flapping mosquitto, a
// serial device that vanishes, a full spool. Every mail that got a 250 must
// reach MQTT; duplicates are counted (QoS 1 allows them) and reported. The
// binary killed with SIGKILL mid-load is tested in systemtest.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/serial/serialtest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/spool/spooltest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestBrokerOutageLosesNothing: with mosquitto stopped, 200 mails all get
// 250; once it is back, all 200 arrive.
func TestBrokerOutageLosesNothing(t *testing.T) {
	broker := mqtttest.StartMosquittoPersistent(t)
	stream := mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "outage-sub", nil)
	cfg := testConfig(t, broker.URL(), "")
	cfg.MQTT.MaxReconnect = time.Second
	es := startEdgesink(t, cfg)

	broker.Stop()
	acked, refused, errs := smtptest.SendMany(func() string { return es.SMTPAddr }, "outage", 200, 10, nil)
	if len(refused) > 0 {
		t.Fatalf("%d of 200 mails refused during the outage: %v", len(refused), errs[0])
	}
	broker.Restart()
	mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "outage-sub", stream)
	seen := stream.AwaitSubjects(t, acked, 60*time.Second)
	t.Logf("broker outage: %d mails acknowledged, %d delivered, %d duplicates", len(acked), len(seen), mqtttest.Duplicates(seen))
}

// TestBrokerFlapping: the broker stops and starts three times while mails
// keep coming; every acknowledged mail arrives.
func TestBrokerFlapping(t *testing.T) {
	broker := mqtttest.StartMosquittoPersistent(t)
	stream := mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "flap-sub", nil)
	cfg := testConfig(t, broker.URL(), "")
	cfg.MQTT.MaxReconnect = 500 * time.Millisecond
	es := startEdgesink(t, cfg)

	done := make(chan struct{})
	var acked []string
	var refused []string
	go func() {
		defer close(done)
		acked, refused, _ = smtptest.SendMany(func() string { return es.SMTPAddr }, "flap", 400, 8, nil)
	}()
	for i := 0; i < 3; i++ {
		time.Sleep(150 * time.Millisecond)
		broker.Stop()
		time.Sleep(300 * time.Millisecond)
		broker.Restart()
		mqtttest.SubscribeSession(t, broker.Addr(), "edgesink/+/alert", "flap-sub", stream)
	}
	<-done
	if len(refused) > 0 {
		t.Fatalf("%d mails refused while the broker flapped", len(refused))
	}
	seen := stream.AwaitSubjects(t, acked, 60*time.Second)
	t.Logf("broker flapping: %d acknowledged, %d delivered, %d duplicates", len(acked), len(seen), mqtttest.Duplicates(seen))
}

// TestSerialVanishes: alerts accepted while the serial device is unplugged
// are written, in order, once it is back.
func TestSerialVanishes(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	pty := serialtest.StartPty(t)
	cfg := testConfig(t, broker.URL(), pty.Dev)
	cfg.Serial.Template = "{subject}"
	es := startEdgesink(t, cfg)
	if err := sendMail(context.Background(), es.SMTPAddr, "x", "ups@rack.lan", []string{"a@b"}, smtptest.SubjectMail("before")); err != nil {
		t.Fatal(err)
	}
	if l := pty.NextLine(t, 10*time.Second); l != "before\r\n" {
		t.Fatalf("line %q", l)
	}
	pty.Unplug()
	for i := 0; i < 20; i++ {
		if err := sendMail(context.Background(), es.SMTPAddr, "x", "ups@rack.lan", []string{"a@b"}, smtptest.SubjectMail(fmt.Sprintf("gone-%d", i))); err != nil {
			t.Fatalf("mail %d while unplugged: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	pty.Plug()
	for i := 0; i < 20; i++ {
		if l := pty.NextLine(t, 20*time.Second); l != fmt.Sprintf("gone-%d\r\n", i) {
			t.Fatalf("line %d after replug: %q", i, l)
		}
	}
}

// TestSpoolFullAnswers452: at its cap the spool refuses new mail with 452
// (the device retries later) and keeps what it holds.
func TestSpoolFullAnswers452(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	cfg := testConfig(t, broker.URL(), "")
	cfg.Spool.MaxAlerts = 5
	cfg.SMTP.ShutdownGrace = 500 * time.Millisecond // the broker stays down: nothing to drain
	es := startEdgesink(t, cfg)
	broker.Stop()
	time.Sleep(200 * time.Millisecond)
	var got452 error
	accepted := 0
	for i := 0; i < 10 && got452 == nil; i++ {
		err := sendMail(context.Background(), es.SMTPAddr, "x", "cam@cams.lan", []string{"a@b"}, smtptest.SubjectMail(fmt.Sprint(i)))
		switch {
		case err == nil:
			accepted++
		case strings.Contains(err.Error(), "452"):
			got452 = err
		default:
			t.Fatalf("mail %d: %v", i, err)
		}
	}
	if got452 == nil || accepted != 5 {
		t.Fatalf("accepted %d, then %v; want 5 then 452", accepted, got452)
	}
	items, err := spool.List(cfg.Spool.Dir)
	if err != nil || len(items) != 5 {
		t.Fatalf("spool holds %d alerts (%v), want 5", len(items), err)
	}
}

// TestSpoolCommand drives 'edgesink spool' over a spool with a dead letter.
func TestSpoolCommand(t *testing.T) {
	dir := t.TempDir()
	a := spooltest.DeadLetter(t, dir, "Motion")

	code, out, _ := runCLI("spool", "--spool-dir", dir, "list")
	if code != exitOK || !strings.Contains(out, a.ID) || !strings.Contains(out, "dead") || !strings.Contains(out, "payload too large") ||
		!strings.Contains(out, ": 0 queued, 1 dead letter\n") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = runCLI("spool", "--spool-dir", dir, "show", a.ID)
	if code != exitOK || !strings.Contains(out, "output mqtt gave up: payload too large") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	if code, out, _ = runCLI("spool", "--spool-dir", dir, "retry", a.ID); code != exitOK || !strings.Contains(out, "queued again") {
		t.Fatalf("retry: %d\n%s", code, out)
	}
	if _, out, _ = runCLI("spool", "--spool-dir", dir, "list"); !strings.Contains(out, "queued") {
		t.Fatalf("after retry: %s", out)
	}
	if code, _, _ = runCLI("spool", "--spool-dir", dir, "drop", a.ID); code != exitOK {
		t.Fatalf("drop: %d", code)
	}
	if _, out, _ = runCLI("spool", "--spool-dir", dir, "list"); !strings.Contains(out, "is empty") {
		t.Fatalf("after drop: %s", out)
	}
	if code, _, errOut := runCLI("spool", "--spool-dir", dir, "show", "nope"); code != exitUsage || !strings.Contains(errOut, "no such alert") {
		t.Errorf("show unknown: %d %s", code, errOut)
	}
	if code, _, _ := runCLI("spool", "--spool-dir", dir, "list", "extra"); code != exitUsage {
		t.Errorf("list with argument: %d", code)
	}
}
