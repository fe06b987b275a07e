package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
)

// TestHomeAssistantWiring runs the real serve() against mosquitto: a
// camera mail whose JPEG is declared application/octet-stream goes through
// the real extraction; its device appears in Home Assistant (retained
// config), its snapshot on the image topic byte for byte; 'edgesink
// devices list' shows it, a restart announces the same id again (no
// duplicate), 'edgesink devices forget' empties the config and the
// registry, and with no edgesink running 'devices list' reads the file.
func TestHomeAssistantWiring(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	cfg := testConfig(t, broker.URL(), "")
	dir := cfg.Spool.Dir
	img := append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte("frame\n"), 500)...)
	mail := fmt.Sprintf("From: cam@cams.lan\r\nTo: a@b\r\nSubject: Motion alarm\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nmotion\r\n"+
		"--B\r\nContent-Type: application/octet-stream; name=\"a.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--B--\r\n",
		base64.StdEncoding.EncodeToString(img))
	const cfgTopic = "homeassistant/device/edgesink_porch/config"

	live := mqtttest.SubscribeWith(t, broker.Addr(), "#", mqtttest.Login{})
	es := startEdgesink(t, cfg)
	if err := sendMail(context.Background(), es.SMTPAddr, "x", "porch@cams.lan", []string{"a@b"}, []byte(mail)); err != nil {
		t.Fatal(err)
	}
	first := live.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == cfgTopic })
	// The generic template knows "Motion alarm": the device gets a motion sensor.
	if !strings.Contains(first.Payload, `"event_types":["motion"]`) || !strings.Contains(first.Payload, `"device_class":"motion"`) {
		t.Errorf("config %s", first.Payload)
	}
	if m := live.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == "edgesink/porch/snapshot" }); m.Payload != string(img) {
		t.Errorf("snapshot: %d bytes, want the attachment's %d", len(m.Payload), len(img))
	}
	// The status page lists the registry's device with its snapshot as the
	// thumbnail, served byte for byte (to the page's session, as a browser
	// fetches it).
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	page := httpGet(t, browser, "http://"+es.HTTPAddr+"/")
	if !strings.Contains(page, "/snapshot/porch.jpg") {
		t.Errorf("the status page shows no snapshot thumbnail for porch")
	}
	if got := httpGet(t, browser, "http://"+es.HTTPAddr+"/snapshot/porch.jpg"); got != string(img) {
		t.Errorf("/snapshot/porch.jpg: %d bytes, want the attachment's %d", len(got), len(img))
	}
	code, out, errOut := runCLI("devices", "list", "--spool-dir", dir)
	if code != exitOK || !strings.Contains(out, "porch") || !strings.Contains(out, "motion") {
		t.Fatalf("devices list: %d\n%s%s", code, out, errOut)
	}
	if err := es.stop(); err != nil {
		t.Fatal(err)
	}

	es = startEdgesink(t, cfg)
	again := live.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == cfgTopic })
	if again.Payload != first.Payload {
		t.Errorf("after a restart the device is announced differently:\n%s\n%s", again.Payload, first.Payload)
	}
	code, out, errOut = runCLI("devices", "forget", "porch", "--spool-dir", dir)
	if code != exitOK || !strings.Contains(out, "removed from Home Assistant") {
		t.Fatalf("devices forget: %d\n%s%s", code, out, errOut)
	}
	// The restart announces the device once per connection event, so a
	// second copy of the config may still come first; the empty one must
	// follow (Next fails the test if it does not).
	live.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return m.Topic == cfgTopic && m.Payload == "" })
	if err := es.stop(); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("devices", "list", "--spool-dir", dir)
	if code != exitOK || !strings.Contains(out, "no devices") {
		t.Errorf("devices list with no edgesink running: %d %s", code, out)
	}
	if code, _, errOut := runCLI("devices", "forget", "porch", "--spool-dir", dir); code != exitUsage || !strings.Contains(errOut, "no device") {
		t.Errorf("forgetting an unknown device: %d %s", code, errOut)
	}
}

// TestHomeAssistantOnTheEmbeddedBroker: with the embedded broker and a
// homeassistant login, Home Assistant sees the device's config; its birth
// message brings it again; deleting the device there (an empty retained
// config, the one thing that role may publish under the prefix) forgets
// it here.
func TestHomeAssistantOnTheEmbeddedBroker(t *testing.T) {
	cfg, _ := brokerConfig(t)
	cfg.HomeAssistant.BirthDelay = 10 * time.Millisecond
	es := startEdgesink(t, cfg)
	ha := mqttLogin{addr: es.BrokerAddr, user: "ha", pass: haPass}
	const config = "homeassistant/device/edgesink_cam/config"
	watch := ha.sub(t, config)
	sendAlert(t, es, "motion")
	first := ""
	if topic, payload := watch.next(t); topic != config || !strings.Contains(payload, `"unique_id":"edgesink_cam_event"`) {
		t.Fatalf("Home Assistant got %s %q, want the camera's config", topic, payload)
	} else {
		first = payload
	}
	ha.mustPub(t, "-t", "homeassistant/status", "-m", "online")
	if topic, payload := watch.next(t); topic != config || payload != first {
		t.Fatalf("after the birth message: %s %q, want the config again", topic, payload)
	}
	ha.mustPub(t, "-r", "-n", "-t", config)
	watch.next(t) // its own deletion
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _ := runCLI("devices", "list", "--spool-dir", cfg.Spool.Dir)
		if strings.Contains(out, "no devices") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a device deleted in Home Assistant is still registered:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpGet fetches url with c and fails the test unless it answers 200.
func httpGet(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(body)
}
