package systemtest

import (
	"bufio"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
)

// TestBinarySIGTERM runs the real binary as a user would: it starts, says
// where it listens, accepts a mail, and on SIGTERM exits 0.
func TestBinarySIGTERM(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	bin := binary(t)
	cmd := exec.Command(bin, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--log-level", "info",
		"--spool-dir", t.TempDir(), "--http-listen", "127.0.0.1:0")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	addr := ""
	readyRE := regexp.MustCompile(`msg="edgesink ready".* smtp=(\S+)`)
	timeout := time.After(20 * time.Second)
	for addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("edgesink exited before ready")
			}
			t.Log(l)
			if m := readyRE.FindStringSubmatch(l); m != nil {
				addr = m[1]
			}
		case <-timeout:
			t.Fatal("no ready line within 20s")
		}
	}
	out, err := exec.Command(bin, "send-test", "--server", addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "accepted") {
		t.Fatalf("send-test: %v %s", err, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sawStopped := false
	for l := range lines {
		t.Log(l)
		sawStopped = sawStopped || strings.Contains(l, `msg="edgesink stopped"`)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !sawStopped {
		t.Error("no 'edgesink stopped' log line")
	}
	_, _ = io.Copy(io.Discard, stderr)
}
