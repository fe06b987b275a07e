package status

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
)

func testAlert(subject string) *sink.Alert {
	return &sink.Alert{ID: sink.NewID(time.Now()), ReceivedAt: time.Now().UTC(), Device: "cam", Subject: subject,
		RcptTo: []string{}, From: []string{}, To: []string{}, Attachments: []sink.Attachment{}, ParseErrors: []string{}}
}

// TestRawMailOffThe250Path: the raw mail of a queued alert stays in RAM;
// it reaches the disk (beside the dead letter) only when the alert dies,
// and leaves RAM once every output is done with it (unless the ring keeps
// it).
func TestRawMailOffThe250Path(t *testing.T) {
	for _, tt := range []struct {
		name   string
		refuse bool
		ring   int
	}{
		{"delivered, no ring", false, 0},
		{"delivered, ring", false, 5},
		{"dead letter", true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := forward.Func{ID: "mqtt", F: func(context.Context, *sink.Alert) error {
				if tt.refuse {
					return errors.New("payload too large")
				}
				return nil
			}}
			rec := NewRecorder(Config{RawRing: tt.ring})
			sp, err := spool.Open(spool.Config{Dir: dir, MaxAttempts: 1, RetryMin: time.Millisecond, RetryMax: time.Millisecond}, nil, rec.Output(out))
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			rec.SetSpoolDir(sp.Dir())
			sp.OnDeadLetter(rec.DeadLetter)
			raw := []byte("From: cam@cams.lan\r\nSubject: hello\r\n\r\nbody\r\n")
			a := testAlert("hello")
			buf := bytes.Clone(raw) // the SMTP server's buffer, reused once Handle returns
			if err := rec.Handler(sp).Handle(sink.WithRawMail(context.Background(), buf), a); err != nil {
				t.Fatal(err)
			}
			for i := range buf {
				buf[i] = 'X'
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := sp.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			onDisk, err := os.ReadFile(spool.RawPath(dir, a.ID))
			if tt.refuse {
				if !bytes.Equal(onDisk, raw) {
					t.Errorf("dead letter's raw mail on disk: %q, %v; want %q", onDisk, err, raw)
				}
			} else if err == nil {
				t.Errorf("raw mail of a delivered alert written to disk")
			}
			rec.raw.mu.Lock()
			_, inRAM := rec.raw.mails[a.ID]
			used := rec.raw.used
			rec.raw.mu.Unlock()
			if wantRAM := tt.ring > 0; inRAM != wantRAM {
				t.Errorf("raw mail held in RAM: %v, want %v (%d bytes held)", inRAM, wantRAM, used)
			}
			if got, ok := rec.Raw(a.ID); (tt.refuse || tt.ring > 0) && (!ok || !bytes.Equal(got, raw)) {
				t.Errorf("Raw(%s) = %q, %v", a.ID, got, ok)
			}
			items, _ := spool.List(dir)
			for _, it := range items {
				if it.State == "queued" {
					t.Errorf("queue not empty: %+v", it)
				}
			}
		})
	}
}

func TestRawStoreBounded(t *testing.T) {
	s := newRawStore(100, 0)
	for i := range 10 {
		s.put(string(rune('a'+i)), bytes.Repeat([]byte{'x'}, 30))
		if s.used > 100 {
			t.Fatalf("after %d mails %d bytes held, bound 100", i+1, s.used)
		}
	}
	if _, ok := s.get("a"); ok {
		t.Error("the oldest raw mail is still held")
	}
	if _, ok := s.get("j"); !ok {
		t.Error("the newest raw mail is gone")
	}
	s.put("big", bytes.Repeat([]byte{'x'}, 101))
	if _, ok := s.get("big"); ok {
		t.Error("a mail larger than the bound is held")
	}
}

// seriesRE is a sample line of the Prometheus text format.
var seriesRE = regexp.MustCompile(`^[a-z_]+(\{([a-z_]+="[^"\\\n]*",?)*\})? [0-9.e+-]+$`)

func TestMetricsLabelsFromClosedSets(t *testing.T) {
	m := newMetrics()
	for _, typ := range []string{"motion", `bad"} 1` + "\n" + `evil{x="`, "Motion", "", strings.Repeat("a", 40)} {
		m.alert(eventLabel(&sink.Event{Type: typ}))
	}
	for i := range 200 {
		m.alert(eventLabel(&sink.Event{Type: "t" + strings.Repeat("x", i%40)}))
	}
	m.alert(eventLabel(nil))
	m.delivery("mqtt", nil, 3*time.Millisecond)
	m.delivery("mqtt", errors.New("down"), time.Second)
	m.dead("mqtt")
	m.Replied(250)
	m.Replied(451)
	var buf bytes.Buffer
	m.write(&buf, gauges{outputsUp: map[string]bool{"mqtt": true}, brokerClients: 2, version: "v1"})
	labels := 0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !seriesRE.MatchString(line) {
			t.Errorf("not a valid sample line: %q", line)
		}
		if strings.HasPrefix(line, "edgesink_alerts_total{") {
			labels++
		}
	}
	if labels > maxEventTypes+1 {
		t.Errorf("%d event_type label values, bound %d", labels, maxEventTypes+1)
	}
	for _, want := range []string{
		`edgesink_alerts_total{event_type="motion"} 1`, `edgesink_alerts_total{event_type="none"} 1`,
		`edgesink_mails_received_total{code_class="2xx"} 1`, `edgesink_mails_received_total{code_class="4xx"} 1`,
		`edgesink_deliveries_total{output="mqtt",outcome="dead"} 1`,
		`edgesink_delivery_duration_seconds_bucket{output="mqtt",le="0.005"} 1`,
		`edgesink_delivery_duration_seconds_count{output="mqtt"} 1`,
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("no %q in:\n%s", want, buf.String())
		}
	}
}

// hostileView is a view with s in every string a mail (or an output's
// error about it) can set.
func hostileView(s string) View {
	at := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	return View{
		Info:    Info{Version: "v1", ConfigPath: "/etc/edgesink/edgesink.yaml", Listening: []string{"smtp 127.0.0.1:2525"}},
		Devices: []DeviceInfo{{Name: s, Template: s, LastEvent: s, LastAt: at, Today: 2, Snapshot: "/snap/cam.jpg"}},
		Alerts: []AlertRow{{ID: "0123456789abcdef01234567", At: at, Device: s, Event: s, Subject: s, ReplayOf: s, JSON: s,
			Deliveries: []Delivery{{Output: "mqtt", State: "retrying", Since: at, Error: s}}, HasRaw: true}},
		Queue: &QueueView{Stats: spool.Stats{Queued: 1}, Err: s,
			Dead: []DeadView{{ID: "0123456789abcdef01234567", Device: s, Subject: s, Output: "mqtt", Reason: s, At: at, HasRaw: true}}},
		Outputs: []OutputView{{Name: "mqtt", Up: false, Since: at, LastError: s}},
		Token:   "abc", User: "admin", Login: true, Broker: 1, Started: at,
	}
}

// markupCount counts what could open or close a tag or an attribute.
func markupCount(v View) (n int) {
	var p page
	renderPage(&p, v)
	for _, c := range p.b.Bytes() {
		switch c {
		case '<', '>', '"', '\'':
			n++
		}
	}
	return n
}

// FuzzPageEscapes: whatever a mail says, the page has exactly the markup
// it has for a harmless word: no string from a mail opens a tag or leaves
// an attribute.
func FuzzPageEscapes(f *testing.F) {
	for _, s := range []string{`<script>alert(1)</script>`, `<img src=x onerror=alert(1)>`, `"><b x='`, "&lt;", "\x00\xff", "javascript:alert(1)"} {
		f.Add(s)
	}
	want := markupCount(hostileView("cam"))
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			t.Skip("an empty field leaves its element out")
		}
		if got := markupCount(hostileView(s)); got != want {
			var p page
			renderPage(&p, hostileView(s))
			t.Fatalf("%q changed the page's markup (%d markup characters, want %d):\n%s", s, got, want, p.b.String())
		}
	})
}

func TestSnapshotURLMustBeLocal(t *testing.T) {
	for u, ok := range map[string]bool{"/snapshot/cam1.jpg": true, "//evil.example/x.jpg": false,
		"javascript:alert(1)": false, "http://evil.example/": false, `/a" onerror="x`: false} {
		if localURL(u) != ok {
			t.Errorf("localURL(%q) = %v", u, !ok)
		}
	}
}

// testServer serves s on 127.0.0.1:0 until the test ends.
func testServer(t *testing.T, cfg Config, d Deps) (*Server, string) {
	t.Helper()
	if d.Recorder == nil {
		d.Recorder = NewRecorder(cfg)
	}
	s, err := New(cfg, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { _ = s.Close() })
	return s, "http://" + l.Addr().String()
}

// plainCheck stands in for bcrypt: the hash is "hash:" + the password.
func plainCheck(hash, password string) error {
	if hash != "hash:"+password {
		return errors.New("mismatch")
	}
	return nil
}

func noRedirect() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestFailedLoginsWaitLonger: each failed login from one address is
// answered later than the one before; a good one is not held up.
func TestFailedLoginsWaitLonger(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "0.0.0.0:8025" // a LAN address: login needed (served on loopback here)
	cfg.Users = map[string]string{"admin": "$2a$10$" + strings.Repeat("x", 53)}
	s, base := testServer(t, cfg, Deps{CheckPassword: func(hash, pw string) error {
		if pw == "right" {
			return nil
		}
		return errors.New("mismatch")
	}})
	var mu sync.Mutex
	var waits []time.Duration
	s.sleep = func(_ context.Context, d time.Duration) { mu.Lock(); waits = append(waits, d); mu.Unlock() }
	c := noRedirect()
	for range 3 {
		resp, err := c.PostForm(base+"/login", url.Values{"user": {"admin"}, "password": {"wrong"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("wrong password: %s, want 401", resp.Status)
		}
	}
	resp, err := c.PostForm(base+"/login", url.Values{"user": {"admin"}, "password": {"right"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("right password: %s, want 303", resp.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 3 || !(waits[0] > 0 && waits[1] > waits[0] && waits[2] > waits[1]) {
		t.Errorf("waits before the answers to failed logins: %v, want 3 growing ones", waits)
	}
}

// TestStreamsCapped: live-update streams beyond max_streams get 503.
func TestStreamsCapped(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxStreams = 1
	s, base := testServer(t, cfg, Deps{})
	c := noRedirect()
	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookie := resp.Header.Get("Set-Cookie")
	open := func() *http.Response {
		req, _ := http.NewRequest("GET", base+"/events", nil)
		req.Header.Set("Cookie", strings.SplitN(cookie, ";", 2)[0])
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := open()
	defer first.Body.Close()
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first stream: %s", first.Status)
	}
	r := bufio.NewReader(first.Body)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream began with %q", line)
	}
	second := open()
	io.Copy(io.Discard, second.Body)
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second stream: %s, want 503", second.Status)
	}
	s.hub.notify()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no change event: %v", err)
		}
		if line == "event: change\n" {
			break
		}
	}
}

type downOutput struct{ forward.Func }

func (downOutput) State() forward.State {
	return forward.State{Up: false, Since: time.Now().Add(-time.Minute), LastError: "connection refused"}
}

func TestReadyz(t *testing.T) {
	up := forward.Func{ID: "serial", F: func(context.Context, *sink.Alert) error { return nil }}
	down := downOutput{forward.Func{ID: "mqtt"}}
	for _, tt := range []struct {
		name    string
		outputs []Output
		smtp    bool
		want    int
		reason  string
	}{
		{"all up", []Output{up}, true, http.StatusOK, "ready"},
		{"an output down longer than the grace", []Output{up, down}, true, http.StatusServiceUnavailable, "mqtt: down for 1m0s: connection refused"},
		{"smtp not listening", []Output{up}, false, http.StatusServiceUnavailable, "smtp: not listening"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, base := testServer(t, DefaultConfig(), Deps{Outputs: tt.outputs, SMTPListening: func() bool { return tt.smtp }})
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || !strings.Contains(string(body), tt.reason) {
				t.Errorf("/readyz: %d %s, want %d with %q", resp.StatusCode, body, tt.want, tt.reason)
			}
		})
	}
}

// TestHeaders: a strict CSP on every answer; no inline script on the page.
func TestHeaders(t *testing.T) {
	_, base := testServer(t, DefaultConfig(), Deps{})
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline code: %q", csp)
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).Match(body) || bytes.Contains(body, []byte(" on")) && regexp.MustCompile(`\son[a-z]+=`).Match(body) {
		t.Errorf("inline script or event handler in the page:\n%s", body)
	}
}

type snapshots map[string][]byte

func (s snapshots) Snapshot(device string) ([]byte, bool) { b, ok := s[device]; return b, ok }
func (s snapshots) HasSnapshot(device string) bool        { _, ok := s[device]; return ok }

// TestMemorySpoolDeadLetters: with a memory spool the page still retries,
// replays and drops dead letters, their raw mail kept in RAM; a device's
// snapshot shows as its thumbnail.
func TestMemorySpoolDeadLetters(t *testing.T) {
	var mu sync.Mutex
	refuse := true
	var got []*sink.Alert
	out := forward.Func{ID: "mqtt", F: func(_ context.Context, a *sink.Alert) error {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			return errors.New("payload too large")
		}
		got = append(got, a)
		return nil
	}}
	cfg := DefaultConfig()
	rec := NewRecorder(cfg)
	sp, err := spool.Open(spool.Config{Mode: spool.ModeMemory, MaxAttempts: 1, RetryMin: time.Millisecond, RetryMax: time.Millisecond}, nil, rec.Output(out))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.OnDeadLetter(rec.DeadLetter)
	handler := rec.Handler(sp)
	replay := func(ctx context.Context, raw []byte, orig *sink.Alert) (*sink.Alert, error) {
		a := testAlert(string(raw))
		a.ReplayOf = orig.ID
		return a, handler.Handle(ctx, a)
	}
	_, base := testServer(t, cfg, Deps{Recorder: rec, Queue: sp, Outputs: []Output{out}, Replay: replay,
		Snapshots: snapshots{"cam": []byte("\xff\xd8jpeg")}})

	var dead []*sink.Alert
	for _, raw := range []string{"mail one", "mail two", "mail three"} {
		a := testAlert(raw)
		if err := handler.Handle(sink.WithRawMail(context.Background(), []byte(raw)), a); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sp.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	refuse = false
	mu.Unlock()

	c := noRedirect()
	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cookie := strings.SplitN(resp.Header.Get("Set-Cookie"), ";", 2)[0]
	token := regexp.MustCompile(`name="token" value="([0-9a-f]+)"`).FindSubmatch(body)
	if token == nil || !bytes.Contains(body, []byte(`src="/snapshot/cam.jpg"`)) || bytes.Count(body, []byte("/replay\"")) != 3 {
		t.Fatalf("page without token, thumbnail or three replayable dead letters:\n%s", body)
	}
	do := func(method, path string) *http.Response {
		req, _ := http.NewRequest(method, base+path, strings.NewReader("token="+string(token[1])))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", cookie)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := do("GET", "/snapshot/cam.jpg"); resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Errorf("snapshot: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, step := range []struct{ path, want string }{
		{"/dead/" + dead[0].ID + "/retry", dead[0].ID},
		{"/dead/" + dead[1].ID + "/replay", "mail two"},
	} {
		if resp := do("POST", step.path); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %s", step.path, resp.Status)
		}
		if err := sp.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last.ID != step.want && last.Subject != step.want {
			t.Errorf("after POST %s the output got %s %q", step.path, last.ID, last.Subject)
		}
	}
	if resp := do("POST", "/dead/"+dead[2].ID+"/drop"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("drop: %s", resp.Status)
	}
	left, _ := sp.Dead()
	if len(left) != 1 || left[0].Alert.ID != dead[1].ID { // the replayed one stays until dropped
		t.Errorf("dead letters left: %v", left)
	}
	if _, ok := rec.Raw(dead[2].ID); ok {
		t.Error("a dropped dead letter's raw mail is still held")
	}
	if resp := do("GET", "/raw/"+dead[1].ID+".eml"); resp.StatusCode != http.StatusOK {
		t.Errorf("raw mail of a memory spool's dead letter: %s", resp.Status)
	}
}

// ruleFunc is a routing rule table in one function.
type ruleFunc func(*sink.Alert) forward.Decision

func (f ruleFunc) Decide(a *sink.Alert) forward.Decision { return f(a) }

// TestDeliveriesFollowTheRoute: the page lists, for each alert, only the
// outputs its route names; an alert a rule drops, or one the queue folds
// into a storm's follow-up, says so instead of waiting for ever.
func TestDeliveriesFollowTheRoute(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	block := func(name string) forward.Forwarder {
		return forward.Func{ID: name, F: func(ctx context.Context, _ *sink.Alert) error {
			select {
			case <-hold:
			case <-ctx.Done():
			}
			return nil
		}}
	}
	rec := NewRecorder(Config{})
	sp, err := spool.Open(spool.Config{Mode: spool.ModeMemory, Coalesce: spool.CoalesceConfig{Window: time.Hour}},
		nil, rec.Output(block("mqtt")), rec.Output(block("serial")))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.OnDecided(rec.Decided)
	sp.SetRouter(ruleFunc(func(a *sink.Alert) forward.Decision {
		switch a.Subject {
		case "printer":
			return forward.Decision{Matched: true, Outputs: []string{"serial"}}
		case "spam":
			return forward.Decision{Matched: true, Drop: true}
		}
		return forward.Decision{}
	}))
	h := rec.Handler(sp)
	motion := func(subject string) *sink.Alert {
		a := testAlert(subject)
		a.Event = &sink.Event{Type: "motion", State: "start", Channel: "1"}
		return a
	}
	alerts := []*sink.Alert{testAlert("printer"), testAlert("spam"), motion("first"), motion("second")}
	for _, a := range alerts {
		if err := h.Handle(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"printer": "serial: pending",
		"spam":    "mqtt: dropped by rule, serial: dropped by rule",
		"first":   "mqtt: pending, serial: pending",
		"second":  "mqtt: folded, serial: folded",
	}
	rows := rec.recentAlerts()
	if len(rows) != len(alerts) {
		t.Fatalf("the page lists %d alerts, want %d", len(rows), len(alerts))
	}
	for _, row := range rows {
		var got []string
		for _, d := range row.Deliveries {
			got = append(got, d.Output+": "+d.State)
		}
		if strings.Join(got, ", ") != want[row.Subject] {
			t.Errorf("%s: deliveries %q, want %q", row.Subject, strings.Join(got, ", "), want[row.Subject])
		}
	}
}

// TestRecentAlertJSON: the page shows each recent alert's JSON indented
// as json.MarshalIndent writes it, although it is kept compact.
func TestRecentAlertJSON(t *testing.T) {
	rec := NewRecorder(Config{})
	a := testAlert("indented <json> & \u2028")
	a.Attachments = []sink.Attachment{{Filename: "snap.jpg", ContentType: "image/jpeg", Size: 3}}
	if err := rec.Handler(sink.HandlerFunc(func(context.Context, *sink.Alert) error { return nil })).Handle(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	want, _ := json.MarshalIndent(a, "", "  ")
	rows := rec.recentAlerts()
	if len(rows) != 1 || rows[0].JSON != string(want) {
		t.Fatalf("rows %+v, want JSON\n%s", rows, want)
	}
}
