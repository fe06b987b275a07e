package systemtest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/doctest"
	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestHalfMisbehave is the load test of issue 4: 200 concurrent
// connections to the real binary, from 100 loopback addresses, half of
// them misbehaving (one byte a second, endless lines, garbage commands,
// oversize mail, idle sessions). Every well-behaved device gets its mail
// accepted, retrying on 4xx as devices do, every alert reaches MQTT, and
// the process's peak RSS stays within the memory the config allows.
func TestHalfMisbehave(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	// The config allows 64 MiB of mail in transfer; parsing needs as much
	// again at most; plus the runtime and buffers of 256 connections.
	limit := int64(2*64<<10 + 256*64 + 48<<10) // KiB
	if said := doctest.Numbers(t, readme, `the load test fails when it exceeds (\d+) MiB`); int64(said[0])<<10 != limit {
		t.Fatalf("README says the load test fails above %g MiB; it fails above %d MiB", said[0], limit>>10)
	}
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(conf, []byte("smtp:\n  max_connections: 256\n  read_timeout: 4s\n  data_timeout: 8s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr := startBinary(t, binary(t), "--config", conf, "--smtp-listen", "127.0.0.1:0",
		"--mqtt-broker", broker.URL(), "--spool-dir", t.TempDir())
	pid := cmd.Process.Pid

	const pairs = 100 // each source address runs one device and one abuser
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range pairs {
		src := fmt.Sprintf("127.0.2.%d", i+1)
		wg.Add(1)
		go func() { defer wg.Done(); misbehave(i%5, src, addr, stop) }()
	}
	time.Sleep(500 * time.Millisecond) // the abusers are in place

	var accepted atomic.Int64
	errs := make(chan error, pairs)
	var good sync.WaitGroup
	for i := range pairs {
		src := fmt.Sprintf("127.0.2.%d", i+1)
		good.Add(1)
		go func() {
			defer good.Done()
			if err := sendAsDevice(src, addr, fmt.Sprintf("dev-%d", i)); err != nil {
				errs <- fmt.Errorf("device %d: %w", i, err)
				return
			}
			accepted.Add(1)
		}()
	}
	good.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := accepted.Load(); n != pairs {
		t.Fatalf("%d of %d well-behaved devices got their mail accepted", n, pairs)
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < pairs {
		select {
		case m := <-sub.C():
			seen[m.Topic] = true
		case <-deadline:
			t.Fatalf("%d of %d alerts reached MQTT", len(seen), pairs)
		}
	}
	peak := vmHWM(t, pid)
	t.Logf("peak RSS under 200 connections, half misbehaving: %.1f MiB", float64(peak)/1024)
	if peak > limit {
		t.Errorf("peak RSS %d KiB, over the %d KiB the limits allow", peak, limit)
	}
}

// misbehave runs one abuser from src until stop: kind 0 sends one byte a
// second, 1 an endless line, 2 garbage commands, 3 oversize mail, 4 opens a
// session and stays idle. Each reconnects when cut off.
func misbehave(kind int, src, addr string, stop chan struct{}) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		done := make(chan struct{})
		go func() {
			select {
			case <-stop:
			case <-done:
			}
			c.Close()
		}()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(c)
		_, _ = r.ReadString('\n')
		switch kind {
		case 0:
			for _, b := range []byte("EHLO slowloris\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					break
				}
				time.Sleep(time.Second)
			}
		case 1:
			chunk := []byte(strings.Repeat("A", 8192))
			for {
				if _, err := c.Write(chunk); err != nil {
					break
				}
			}
		case 2:
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "GARBAGE %d\r\n", i); err != nil {
					break
				}
				if _, err := r.ReadString('\n'); err != nil {
					break
				}
			}
		case 3:
			fmt.Fprintf(c, "EHLO big\r\nMAIL FROM:<big@evil.example>\r\nRCPT TO:<x@edgesink.lan>\r\nDATA\r\n")
			line := []byte(strings.Repeat("B", 998) + "\r\n")
			for written := 0; written < 30<<20; written += len(line) {
				if _, err := c.Write(line); err != nil {
					break
				}
			}
		case 4:
			fmt.Fprintf(c, "EHLO idle\r\n")
			_, _ = r.ReadString('\n')
			select {
			case <-stop:
			case <-time.After(10 * time.Second):
			}
		}
		_, _ = r.ReadString('\n')
		close(done)
	}
}

// sendAsDevice sends one small alert from src, retrying on 4xx and refused
// connections for up to 30 s, as a device with a retry queue would.
func sendAsDevice(src, addr, device string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		msg := fmt.Sprintf("Subject: Motion on %s\r\n\r\nMotion detected.\r\n", device)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last = smtptest.SendMail(ctx, &d, addr, device, device+"@cams.lan", "alerts@edgesink.lan", []byte(msg))
		cancel()
		if last == nil {
			return nil
		}
		if strings.HasPrefix(last.Error(), "5") {
			return last // permanent: a device would give up too
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not accepted within 30s: %w", last)
}

// vmHWM is a process's peak resident set size in KiB.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	return testtools.ProcStatusKiB(t, pid, "VmHWM")
}

// TestIdleConnectionCost opens 200 idle sessions (greeted, EHLO answered)
// to the real binary and holds the growth of its RSS per session to the
// range README's *Memory* paragraph states.
func TestIdleConnectionCost(t *testing.T) {
	const n = 200
	low, high := doctest.Range(t, readme, `An idle connection costs (\d+)[–-](\d+) KiB`)
	broker := mqtttest.StartMosquitto(t)
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(conf, []byte("smtp:\n  max_connections: 256\n  max_connections_per_ip: 256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr := startBinary(t, binary(t), "--config", conf, "--smtp-listen", "127.0.0.1:0",
		"--mqtt-broker", broker.URL(), "--spool-dir", t.TempDir())
	pid := cmd.Process.Pid
	before := testtools.ProcStatusKiB(t, pid, "VmRSS")
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		expectReply(t, r, "220")
		if _, err := c.Write([]byte("EHLO cam\r\n")); err != nil {
			t.Fatal(err)
		}
		expectReply(t, r, "250")
	}
	per := float64(testtools.ProcStatusKiB(t, pid, "VmRSS")-before) / n
	t.Logf("an idle connection costs %.1f KiB of RSS", per)
	if per < low || per > high {
		t.Errorf("an idle connection costs %.1f KiB of RSS; README says %g–%g KiB", per, low, high)
	}
}

// expectReply reads one (possibly multi-line) SMTP reply and checks its code.
func expectReply(t *testing.T, r *bufio.Reader, code string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, code) {
			t.Fatalf("reply %q, want %s", line, code)
		}
		if len(line) >= 4 && line[3] == ' ' {
			return
		}
	}
}
