package systemtest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgesink/edgesink/deploy/testtools"
)

// browser is a headless Chromium driven over the DevTools protocol: a
// websocket carrying JSON commands ({id, method, params, sessionId}) and
// their answers. The few commands the tests need do not call for a CDP
// library (chromedp brings the whole generated protocol).
type browser struct {
	t       *testing.T
	conn    *websocket.Conn
	session string // the page's session (Target.attachToTarget, flat)

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpAnswer
	wmu     sync.Mutex
}

type cdpAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser runs headless Chromium until the test ends and opens one
// page (a tab) in it, of width × height CSS pixels.
func startBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	chromium := testtools.RequireTool(t, "chromium")
	// Its own profile directory, removed once chromium and its helper
	// processes (its process group) are gone: t.TempDir would race them.
	profile, err := os.MkdirTemp("", "edgesink-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir="+profile, "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	wsURL := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				wsURL <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-wsURL:
	case <-time.After(20 * time.Second):
		t.Fatal("chromium did not open its DevTools port within 20s")
	}
	conn, _, err := websocket.DefaultDialer.Dial(url, nil) //nolint:bodyclose // a websocket
	if err != nil {
		t.Fatalf("connect to chromium's DevTools: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	b := &browser{t: t, conn: conn, waiting: map[int]chan cdpAnswer{}}
	go b.read()

	var target struct{ TargetID string }
	b.callIn("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct{ SessionID string }
	b.callIn("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height,
		"deviceScaleFactor": 1, "mobile": width < 600}, nil)
	return b
}

// read hands each answer to the call waiting for it; events are ignored.
func (b *browser) read() {
	for {
		var msg struct {
			ID int `json:"id"`
			cdpAnswer
		}
		if err := b.conn.ReadJSON(&msg); err != nil {
			return
		}
		b.mu.Lock()
		c := b.waiting[msg.ID]
		delete(b.waiting, msg.ID)
		b.mu.Unlock()
		if c != nil {
			c <- msg.cdpAnswer
		}
	}
}

// call runs a command on the page and decodes its result into out.
func (b *browser) call(method string, params map[string]any, out any) {
	b.t.Helper()
	b.callIn(b.session, method, params, out)
}

func (b *browser) callIn(session, method string, params map[string]any, out any) {
	b.t.Helper()
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	c := make(chan cdpAnswer, 1)
	b.waiting[id] = c
	b.mu.Unlock()
	req := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		req["sessionId"] = session
	}
	b.wmu.Lock()
	err := b.conn.WriteJSON(req)
	b.wmu.Unlock()
	if err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
	select {
	case a := <-c:
		if a.Error != nil {
			b.t.Fatalf("%s: %s", method, a.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(a.Result, out); err != nil {
				b.t.Fatalf("%s: %v", method, err)
			}
		}
	case <-time.After(15 * time.Second):
		b.t.Fatalf("%s: no answer from chromium within 15s", method)
	}
}

// navigate loads url and waits until the page has loaded.
func (b *browser) navigate(url string) {
	b.t.Helper()
	b.call("Page.navigate", map[string]any{"url": url}, nil)
	b.waitFor(`document.readyState === "complete" && location.href === `+jsString(url), 10*time.Second)
}

// eval runs a JavaScript expression in the page and returns its value.
func (b *browser) eval(expr string) any {
	b.t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if r.ExceptionDetails != nil {
		b.t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result.Value
}

// waitFor polls a JavaScript condition until it is true, and returns how
// long that took; it fails the test after timeout.
func (b *browser) waitFor(cond string, timeout time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	for {
		if v, _ := b.eval("!!(" + cond + ")").(bool); v {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			b.t.Fatalf("not true within %s: %s", timeout, cond)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot returns the page as PNG.
func (b *browser) screenshot() []byte {
	b.t.Helper()
	var r struct{ Data string }
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	return png
}

func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
