package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink"
)

func alert(device string) *sink.Alert {
	return &sink.Alert{
		ID:          sink.NewID(time.Now()),
		ReceivedAt:  time.Now().UTC().Truncate(time.Second),
		MailFrom:    device + "@cams.lan",
		RcptTo:      []string{"alerts@edgesink.lan"},
		From:        []string{device + "@cams.lan"},
		To:          []string{},
		Subject:     "Motion",
		Text:        "Motion on camera",
		Device:      device,
		Attachments: []sink.Attachment{},
		ParseErrors: []string{},
	}
}

func newPublisher(t *testing.T, cfg Config) *Publisher {
	t.Helper()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishToMosquitto(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/#")
	p := newPublisher(t, Config{Broker: broker.URL(), ClientID: "edgesink-test-publish"})

	status := sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == "edgesink/status" })
	if status.Payload != "online" {
		t.Errorf("availability = %q, want online", status.Payload)
	}

	a := alert("cam-garage")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Forward(ctx, a); err != nil {
		t.Fatal(err)
	}
	msg := sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return strings.HasSuffix(m.Topic, "/alert") })
	if msg.Topic != "edgesink/cam-garage/alert" {
		t.Errorf("topic %q", msg.Topic)
	}
	var got sink.Alert
	if err := json.Unmarshal([]byte(msg.Payload), &got); err != nil {
		t.Fatalf("payload is not an alert: %v\n%s", err, msg.Payload)
	}
	if got.ID != a.ID || got.Subject != "Motion" || !got.ReceivedAt.Equal(a.ReceivedAt) || got.Device != "cam-garage" {
		t.Errorf("payload %+v", got)
	}

	_ = p.Close()
	off := sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == "edgesink/status" })
	if off.Payload != "offline" {
		t.Errorf("after Close availability = %q, want offline", off.Payload)
	}
}

// TestBrokerOutage: while the broker is down Forward fails at once with a
// temporary error (the device will retry); once it is back, publishing works
// again without restarting edgesink.
func TestBrokerOutage(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	p := newPublisher(t, Config{Broker: broker.URL(), ClientID: "edgesink-test-outage", MaxReconnect: time.Second})

	broker.Stop()
	// Every failure is temporary; soon the publisher knows the connection is
	// gone and fails at once without trying.
	deadline := time.Now().Add(10 * time.Second)
	for {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := p.Forward(ctx, alert("ups"))
		cancel()
		if err == nil {
			t.Log("published before the outage was noticed")
		} else if !sink.Temporary(err) {
			t.Fatalf("Forward with broker down: %v, want a temporary error", err)
		}
		if errors.Is(err, ErrNotConnected) {
			if took := time.Since(start); took > time.Second {
				t.Fatalf("ErrNotConnected took %s", took)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not ErrNotConnected 10s into the outage: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	broker.Restart()
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	if err := p.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Forward(wctx, alert("ups")); err != nil {
		t.Fatalf("after broker restart: %v", err)
	}
	if m := sub.Next(t, 10*time.Second, nil); m.Topic != "edgesink/ups/alert" {
		t.Errorf("topic %q", m.Topic)
	}
}

func TestTopicSanitising(t *testing.T) {
	tm, err := ParseTopic("alerts/{device}/{subject}/{from_domain}")
	if err != nil {
		t.Fatal(err)
	}
	p := &Publisher{topic: tm}
	a := alert("cam")
	a.Subject = "a/b+c#d\x00e"
	a.From, a.MailFrom = nil, ""
	if got := p.Topic(a); got != "alerts/cam/a_b_c_d_e/unknown" {
		t.Errorf("topic %q", got)
	}
	tests := map[string]string{
		"a//b":       "a/_/b",
		"/a/":        "_/a/_",
		"$SYS/x":     "_SYS/x",
		"a+/#\x00":   "a_/__",
		"ok/topic":   "ok/topic",
		"bad\xffutf": "bad_utf",
	}
	for in, want := range tests {
		if got := SanitizeTopic(in); got != want {
			t.Errorf("SanitizeTopic(%q) = %q, want %q", in, got, want)
		}
	}
	if got := SanitizeTopic(strings.Repeat("é", 1000)); len(got) > maxTopicBytes || !strings.HasPrefix(got, "é") {
		t.Errorf("long topic not capped on a rune boundary: %d bytes", len(got))
	}
	for _, bad := range []string{"", "a/+/b", "a/#", "$SYS/{device}", "/a", "a/", "a//b", "{nope}"} {
		if _, err := ParseTopic(bad); err == nil {
			t.Errorf("ParseTopic(%q) accepted", bad)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Broker: "localhost:1883"},
		{Broker: "http://x:1"},
		{Broker: "tcp://x:1", QoS: 3},
		{Broker: "tcp://x:1", AvailabilityTopic: "a/#"},
		{Broker: "tcp://x:1", Topic: "a/+"},
		{Broker: "tcp://x:1", Site: "Lab"},
		{Broker: "tcp://x:1", Site: "a/b"},
		{Broker: "tcp://x:1", Site: "-lab"},
		{Broker: "tcp://x:1", Site: strings.Repeat("a", 33)},
		{Broker: "tcp://x:1", BaseTopic: "home/#"},
		{Broker: "tcp://x:1", Topic: "farm/{site}/{device}"}, // {site} without a site
	} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// TestIdentity: the client id and default topics are those TOPICS.md
// defines: edgesink-<hostname>[-<site>], {base}/status and
// {base}/{device}/alert, {base} being base_topic, else edgesink or
// edgesink/<site>. Without a site, what upgraders had.
func TestIdentity(t *testing.T) {
	host, _ := os.Hostname()
	h := "edgesink-" + sink.SafeName(host)
	tests := []struct {
		name                    string
		in                      Config
		clientID, status, alert string
	}{
		{"no site", Config{}, h, "edgesink/status", "edgesink/{device}/alert"},
		{"site", Config{Site: "lab"}, h + "-lab", "edgesink/lab/status", "edgesink/lab/{device}/alert"},
		{"site and base topic", Config{Site: "lab", BaseTopic: "home/es"}, h + "-lab", "home/es/status", "home/es/{device}/alert"},
		{"base topic", Config{BaseTopic: "home/es"}, h, "home/es/status", "home/es/{device}/alert"},
		{"client id set by hand", Config{Site: "lab", ClientID: "mine"}, "mine", "edgesink/lab/status", "edgesink/lab/{device}/alert"},
		{"topics set by hand", Config{Site: "lab", AvailabilityTopic: "x/y", Topic: "a/{device}"}, h + "-lab", "x/y", "a/{device}"},
		{"status off", Config{Site: "lab", AvailabilityTopic: "-"}, h + "-lab", "", "edgesink/lab/{device}/alert"},
		{"site in a topic set by hand", Config{Site: "barn2", Topic: "farm/{site}/{device}/alert"}, h + "-barn2", "edgesink/barn2/status", "farm/barn2/{device}/alert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Broker = "tcp://127.0.0.1:1"
			got, err := ValidateConfig(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.ClientID != tt.clientID || got.AvailabilityTopic != tt.status || got.Topic != tt.alert {
				t.Errorf("client id %q, status %q, alerts %q; want %q, %q, %q",
					got.ClientID, got.AvailabilityTopic, got.Topic, tt.clientID, tt.status, tt.alert)
			}
		})
	}
}
