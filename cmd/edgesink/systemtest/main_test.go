package systemtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// readme is where the figures the tests hold to are stated.
const readme = "../../../README.md"

// binDir holds the binary every test runs, built once per test run. It is
// open to all (0755): one test runs the binary as a user it creates.
var binDir string

var build struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgesink-systemtest-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the edgesink binary, built (without -race, as shipped) the
// first time a test asks for it.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		bin := filepath.Join(binDir, "edgesink")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/edgesink/edgesink/cmd/edgesink").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		build.path, build.err = bin, os.Chmod(bin, 0o755)
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// startBinary runs edgesink and returns once it logged its SMTP address.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return startBinaryEnv(t, bin, nil, args...)
}

// startBinaryEnv is startBinary with extra environment variables.
func startBinaryEnv(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, withHTTPListen(args)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		readyRE := regexp.MustCompile(`msg="edgesink ready".* smtp=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
	}()
	select {
	case addr := <-ready:
		return cmd, addr
	case <-time.After(20 * time.Second):
		t.Fatal("edgesink not ready within 20s")
		return nil, ""
	}
}

// runBinary runs one command of the binary to its end, as an operator at a
// shell would, and returns its exit code, stdout and stderr.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exit *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
		t.Fatalf("edgesink %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// withHTTPListen adds --http-listen 127.0.0.1:0 unless args set it: the
// status page's default port (8025) is never taken by a test, and tests run
// side by side.
func withHTTPListen(args []string) []string {
	for _, a := range args {
		if strings.HasPrefix(a, "--http-listen") || strings.HasPrefix(a, "-http-listen") {
			return args
		}
	}
	return append(append([]string(nil), args...), "--http-listen", "127.0.0.1:0")
}
