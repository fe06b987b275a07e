// Package serialtest stands in for serial devices in the tests of edgesink's
// serial output: socat pseudo-terminal pairs that can be unplugged and
// plugged again. A missing socat is handled as testtools says.
package serialtest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
)

// Pty is a socat pseudo-terminal pair: edgesink opens Dev, the test reads
// what arrives on the other end.
type Pty struct {
	t     testing.TB
	bin   string
	Dev   string
	peer  string
	lines chan string

	mu       sync.Mutex
	cmd      *exec.Cmd
	peerFile *os.File
}

// StartPty creates the pair and starts reading lines from the peer end.
func StartPty(t testing.TB) *Pty {
	t.Helper()
	dir := t.TempDir()
	p := &Pty{t: t, bin: testtools.RequireTool(t, "socat"), Dev: filepath.Join(dir, "ttyEDGE"),
		peer: filepath.Join(dir, "ttyPEER"), lines: make(chan string, 10000)}
	p.Plug()
	t.Cleanup(p.Unplug)
	return p
}

// Plug (re)creates the pair at the same paths, like a USB adapter that is
// plugged back in.
func (p *Pty) Plug() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, "pty,raw,echo=0,link="+p.Dev, "pty,raw,echo=0,link="+p.peer)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := os.Stat(p.Dev)
		_, e2 := os.Stat(p.peer)
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			p.t.Fatal("socat did not create the pty links within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.OpenFile(p.peer, os.O_RDONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		_ = cmd.Process.Kill()
		p.t.Fatal(err)
	}
	p.cmd, p.peerFile = cmd, f
	go func() {
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
}

// Unplug kills socat: both ends vanish, as when a USB adapter is pulled.
func (p *Pty) Unplug() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	_ = p.peerFile.Close()
	_ = os.Remove(p.Dev)
	_ = os.Remove(p.peer)
	p.cmd, p.peerFile = nil, nil
}

// NextLine returns the next line (with its line ending) the device received.
func (p *Pty) NextLine(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case l := <-p.lines:
		return l
	case <-time.After(timeout):
		t.Fatalf("no serial line within %s", timeout)
		return ""
	}
}

// Lines exposes the stream of received lines.
func (p *Pty) Lines() <-chan string { return p.lines }
