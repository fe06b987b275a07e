package systemtest

// The status page of the real binary, seen by a real browser (headless
// Chromium) and by a scraper.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/forward/spool/spooltest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the status page's screenshot to docs/status-page.png")

// httpAddrRE finds the status page's address in the ready line.
var httpAddrRE = regexp.MustCompile(`msg="edgesink ready".* http=(\S+)`)

// pageClient is a browser-less client of the page: it keeps the session
// cookie and reads the POST token from the page.
type pageClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newPageClient(t *testing.T, base string) *pageClient {
	jar, _ := cookiejar.New(nil)
	return &pageClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (p *pageClient) get(path string) (*http.Response, []byte) {
	p.t.Helper()
	resp, err := p.c.Get(p.base + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func (p *pageClient) post(path string, form url.Values) (*http.Response, []byte) {
	p.t.Helper()
	resp, err := p.c.PostForm(p.base+path, form)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

var tokenRE = regexp.MustCompile(`name="token" value="([0-9a-f]+)"`)

// token is the session's POST token, as the page carries it.
func (p *pageClient) token() string {
	p.t.Helper()
	_, body := p.get("/")
	m := tokenRE.FindSubmatch(body)
	if m == nil {
		p.t.Fatalf("no token on the page:\n%s", body)
	}
	return string(m[1])
}

// counter reads one series' value from /metrics.
func (p *pageClient) counter(series string) int {
	p.t.Helper()
	resp, body := p.get("/metrics")
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("/metrics: %s", resp.Status)
	}
	// A series ending in "{" is summed over all its label values.
	prefix := series + " "
	if strings.HasSuffix(series, "{") {
		prefix = series
	}
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		n, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			p.t.Fatalf("%s: %v", line, err)
		}
		total += int(n)
	}
	return total
}

// TestStatusPageInBrowser: mails sent to the real binary show on its page
// in Chromium, hostile subjects as text that runs nothing, a new mail
// without reload; the raw mail downloads byte for byte; dead letters are
// retried and replayed (page and CLI) into mosquitto; /metrics counts
// exactly; /readyz follows mosquitto going away and coming back.
func TestStatusPageInBrowser(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	bin := binary(t)
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")

	// Dead letters an earlier run left, each with the raw mail beside it
	// as edgesink writes it.
	deadRetry := spooltest.DeadLetter(t, spoolDir, "dead one, to retry")
	deadReplay := spooltest.DeadLetter(t, spoolDir, "dead two, to replay")
	deadCLI := spooltest.DeadLetter(t, spoolDir, "dead three, replayed by the CLI")
	for _, d := range []struct{ id, subject string }{
		{deadRetry.ID, "dead one"}, {deadReplay.ID, "replayed from the page"}, {deadCLI.ID, "replayed from the CLI"},
	} {
		if err := os.WriteFile(spool.RawPath(spoolDir, d.id), smtptest.SubjectMail(d.subject), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	conf := filepath.Join(dir, "edgesink.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("mqtt:\n  broker: %s\n  max_reconnect_interval: 1s\n"+
		"http:\n  listen: 127.0.0.1:0\n  raw_ring: 20\n  ready_grace: 1s\n", broker.URL())), 0o600)
	svc := startService(t, nil, bin, "--config", conf, "--smtp-listen", "127.0.0.1:0", "--spool-dir", spoolDir)
	svc.waitLog(t, `msg="mqtt connected"`, 10*time.Second)
	m := regexp.MustCompile(`msg="edgesink ready".* smtp=(\S+)`).FindStringSubmatch(svc.logText())
	h := httpAddrRE.FindStringSubmatch(svc.logText())
	if m == nil || h == nil {
		t.Fatalf("no SMTP or HTTP address in the log:\n%s", svc.logText())
	}
	smtpAddr, base := m[1], "http://"+h[1]
	page := newPageClient(t, base)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")

	send := func(from, subject string) []byte {
		t.Helper()
		msg := []byte("From: " + from + "\r\nTo: alerts@edgesink.lan\r\nSubject: " + subject +
			"\r\nMessage-ID: <" + strconv.FormatInt(time.Now().UnixNano(), 36) + "@cam>\r\n\r\nalert body\r\n.leading dot\r\n")
		if err := smtptest.SendMail(context.Background(), &net.Dialer{Timeout: 5 * time.Second}, smtpAddr, "cam", from, "alerts@edgesink.lan", msg); err != nil {
			t.Fatalf("send %q: %v", subject, err)
		}
		return msg
	}

	accepted := page.counter(`edgesink_mails_received_total{code_class="2xx"}`)
	alerts := page.counter(`edgesink_alerts_total{`)
	delivered := page.counter(`edgesink_deliveries_total{output="mqtt",outcome="delivered"}`)

	const scriptSubject = `<script>document.title='pwned by script'</script>`
	const imgSubject = `<img src=x onerror="document.title='pwned by img'">`
	longSubject := "Motion detected on channel 1 " + strings.Repeat("ABCDEFGHIJ", 30) + " and a long tail of words that has to wrap"
	sent := send("cam-front@cams.lan", "Motion detected: front door")
	send("nvr@cams.lan", scriptSubject)
	send("ups@cams.lan", imgSubject)
	send("cam-yard@cams.lan", longSubject)
	const mails = 4
	seen := sub.AwaitSubjects(t, []string{"Motion detected: front door", scriptSubject, imgSubject, longSubject}, 10*time.Second)
	_ = seen

	t.Run("metrics count exactly", func(t *testing.T) {
		if got := page.counter(`edgesink_mails_received_total{code_class="2xx"}`) - accepted; got != mails {
			t.Errorf("mails received (2xx) rose by %d, want %d", got, mails)
		}
		if got := page.counter(`edgesink_alerts_total{`) - alerts; got != mails {
			t.Errorf("alerts rose by %d, want %d", got, mails)
		}
		if got := page.counter(`edgesink_deliveries_total{output="mqtt",outcome="delivered"}`) - delivered; got != mails {
			t.Errorf("deliveries rose by %d, want %d", got, mails)
		}
	})

	t.Run("raw mail downloads byte for byte", func(t *testing.T) {
		var id string
		deadline := time.Now().Add(5 * time.Second)
		for id == "" && time.Now().Before(deadline) {
			_, body := page.get("/live")
			body, _, _ = bytes.Cut(body, []byte(`id="queue"`)) // recent alerts only, not the dead letters
			if m := regexp.MustCompile(`href="/raw/([0-9a-f]+)\.eml"`).FindAllSubmatch(body, -1); len(m) > 0 {
				id = string(m[len(m)-1][1]) // the page lists the newest first: the last is the first mail
			}
			time.Sleep(50 * time.Millisecond)
		}
		if id == "" {
			t.Fatal("no raw mail offered on the page")
		}
		resp, body := page.get("/raw/" + id + ".eml")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/raw/%s.eml: %s", id, resp.Status)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
			t.Errorf("Content-Disposition %q, want an attachment", cd)
		}
		if !bytes.Equal(body, sent) {
			t.Errorf("downloaded .eml differs from what the device sent:\n%q\n%q", body, sent)
		}
	})

	t.Run("browser", func(t *testing.T) {
		b := startBrowser(t, 412, 900) // a phone
		b.navigate(base + "/")
		b.waitFor(`document.querySelector("#live.on")`, 5*time.Second) // the live stream is open
		for _, device := range []string{"cam-front", "nvr", "ups", "cam-yard"} {
			b.waitFor(`[...document.querySelectorAll("#devices .name")].some(e => e.textContent === `+jsString(device)+`)`, 2*time.Second)
		}
		for _, subject := range []string{"Motion detected: front door", scriptSubject, imgSubject} {
			b.waitFor(`[...document.querySelectorAll("#alerts .subject")].some(e => e.textContent === `+jsString(subject)+`)`, 2*time.Second)
		}
		if title := b.eval(`document.title`); title != "edgesink" {
			t.Errorf("document.title is %q: a mail's subject ran as code", title)
		}
		if n := b.eval(`document.querySelectorAll("main img, main script").length`); n != float64(0) {
			t.Errorf("%v img or script elements in the page's main part: a subject became markup", n)
		}
		if over := b.eval(`document.documentElement.scrollWidth - window.innerWidth`); over.(float64) > 0 {
			t.Errorf("the page is %v px wider than the phone's screen: a long subject broke the layout", over)
		}

		took := func() time.Duration {
			start := time.Now()
			send("cam-back@cams.lan", "Live: person at the back door")
			b.waitFor(`[...document.querySelectorAll("#alerts .subject")].some(e => e.textContent === "Live: person at the back door")`, 2*time.Second)
			return time.Since(start)
		}()
		t.Logf("a new mail showed on the open page %v after it was sent", took.Round(time.Millisecond))
		if title := b.eval(`document.title`); title != "edgesink" {
			t.Errorf("document.title is %q after the live update: a subject ran as code", title)
		}

		// For README: the whole story on a tall phone screen.
		b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 412, "height": 1700, "deviceScaleFactor": 1, "mobile": true}, nil)
		png := b.screenshot()
		if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot is no PNG (%d bytes)", len(png))
		}
		if *updateScreenshot {
			if err := os.WriteFile("../../../docs/status-page.png", png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("dead letters: retry, replay, refused without token", func(t *testing.T) {
		if resp, _ := page.post("/dead/"+deadRetry.ID+"/retry", url.Values{}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST retry without token: %s, want 403", resp.Status)
		}
		token := page.token()
		if resp, _ := page.post("/dead/"+deadRetry.ID+"/retry", url.Values{"token": {token + "0"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST retry with a wrong token: %s, want 403", resp.Status)
		}
		if resp, body := page.post("/dead/"+deadRetry.ID+"/retry", url.Values{"token": {token}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST retry: %s %s", resp.Status, body)
		}
		msg := sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return strings.Contains(m.Payload, deadRetry.ID) })
		if !strings.Contains(msg.Payload, "dead one, to retry") {
			t.Errorf("retried dead letter arrived as %s", msg.Payload)
		}
		if _, err := os.Stat(spool.RawPath(spoolDir, deadRetry.ID)); err == nil {
			t.Errorf("the retried dead letter's raw mail is left in dead/ after its delivery")
		}

		if resp, body := page.post("/dead/"+deadReplay.ID+"/replay", url.Values{"token": {token}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST replay: %s %s", resp.Status, body)
		}
		checkReplay(t, sub, deadReplay.ID, "replayed from the page")

		code, out, errOut := runBinary(t, "spool", "replay", "--spool-dir", spoolDir, deadCLI.ID)
		if code != 0 {
			t.Fatalf("spool replay: exit %d\n%s%s", code, out, errOut)
		}
		checkReplay(t, sub, deadCLI.ID, "replayed from the CLI")
	})

	t.Run("readyz follows mosquitto", func(t *testing.T) {
		ready := func() (int, string) {
			resp, body := page.get("/readyz")
			return resp.StatusCode, string(body)
		}
		if code, body := ready(); code != http.StatusOK {
			t.Fatalf("/readyz with mosquitto up: %d %s", code, body)
		}
		if resp, _ := page.get("/healthz"); resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz: %s", resp.Status)
		}
		broker.Stop()
		waitStatus(t, ready, http.StatusServiceUnavailable, "mqtt", 10*time.Second)
		broker.Restart()
		waitStatus(t, ready, http.StatusOK, "ready", 10*time.Second)
	})
}

// checkReplay waits for the replay of dead letter id on MQTT: a new alert
// read again from the raw mail (its subject), naming the one it replays.
func checkReplay(t *testing.T, sub *mqtttest.Subscriber, id, subject string) {
	t.Helper()
	msg := sub.Next(t, 10*time.Second, func(m mqtttest.Message) bool { return strings.Contains(m.Payload, `"replay_of":"`+id+`"`) })
	var a struct {
		ID, Subject, Device, ReplayOf string `json:",omitempty"`
	}
	if err := json.Unmarshal([]byte(msg.Payload), &a); err != nil {
		t.Fatal(err)
	}
	if a.Subject != subject || a.ID == id || a.Device != "cam" {
		t.Errorf("replay of %s: subject %q (want %q, read from its raw mail), id %s (want a new one), device %q (want cam)",
			id, a.Subject, subject, a.ID, a.Device)
	}
}

// waitStatus polls until get answers code with a body holding want.
func waitStatus(t *testing.T, get func() (int, string), code int, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, body := get()
		if c == code && strings.Contains(body, want) {
			t.Logf("/readyz: %d %s", c, strings.TrimSpace(body))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s after %s, want %d", c, body, timeout, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatusPageLogin: on a LAN address the page needs a login: the
// generated admin password is logged once, a wrong one gets 401 (later),
// and /metrics takes basic auth; /healthz stays open.
func TestStatusPageLogin(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	port := testtools.FreePort(t)
	spoolDir := t.TempDir()
	svc := startService(t, nil, binary(t), "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(),
		"--spool-dir", spoolDir, "--http-listen", "0.0.0.0:"+strconv.Itoa(port))
	m := regexp.MustCompile(`created the login admin.* user=admin password=(\S+)`).FindStringSubmatch(svc.logText())
	if m == nil {
		t.Fatalf("no generated password in the log:\n%s", svc.logText())
	}
	password := m[1]
	if data, err := os.ReadFile(filepath.Join(spoolDir, "http-admin")); err != nil || strings.Contains(string(data), password) {
		t.Errorf("the generated password is not kept hashed: %q %v", data, err)
	}
	p := newPageClient(t, "http://127.0.0.1:"+strconv.Itoa(port))

	if resp, _ := p.get("/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("GET / without login: %s to %q, want 303 to /login", resp.Status, resp.Header.Get("Location"))
	}
	if resp, _ := p.get("/live"); resp.StatusCode == http.StatusOK {
		t.Errorf("GET /live without login: %s", resp.Status)
	}
	if resp, _ := p.get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without login: %s, want 200", resp.Status)
	}
	if resp, _ := p.get("/metrics"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without login: %s, want 401", resp.Status)
	}
	start := time.Now()
	if resp, _ := p.post("/login", url.Values{"user": {"admin"}, "password": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %s, want 401", resp.Status)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("a failed login was answered after %v: not slowed down", took)
	}
	if resp, _ := p.post("/dead/0123456789abcdef01234567/drop", url.Values{}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without login: %s, want 401", resp.Status)
	}
	if resp, body := p.post("/login", url.Values{"user": {"admin"}, "password": {password}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the generated password: %s %s", resp.Status, body)
	}
	if resp, body := p.get("/"); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("Recent alerts")) {
		t.Fatalf("GET / after login: %s", resp.Status)
	}
	if strings.Contains(svc.logText(), "password="+password) && strings.Count(svc.logText(), password) != 1 {
		t.Errorf("the password was logged more than once")
	}
	if resp, _ := p.post("/dead/0123456789abcdef01234567/drop", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without token after login: %s, want 403", resp.Status)
	}
	req, _ := http.NewRequest("GET", p.base+"/metrics", nil)
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics with basic auth: %s", resp.Status)
	}
}
