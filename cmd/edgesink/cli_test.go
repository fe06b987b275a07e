package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestCLIHelpAndUsage: asked-for help goes to stdout with exit 0 (nothing
// on stderr); a mistake goes to stderr with exit 2.
func TestCLIHelpAndUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string // in stdout for exit 0, in stderr otherwise
	}{
		{[]string{"--help"}, exitOK, "edgesink send-test [flags] [FILE]"},
		{[]string{"-h"}, exitOK, "-smtp-listen"},
		{[]string{"help"}, exitOK, "edgesink check-config [--config] FILE"},
		{[]string{"serve", "--help"}, exitOK, "-smtp-listen"},
		{[]string{"--help-me"}, exitUsage, "flag provided but not defined"},
		{[]string{"check-config", "--help"}, exitOK, "edgesink check-config [--config] FILE"},
		{[]string{"check-config"}, exitUsage, "edgesink check-config [--config] FILE"},
		{[]string{"check-config", "--config", "a.yaml", "b.yaml"}, exitUsage, "edgesink check-config [--config] FILE"},
		{[]string{"send-test", "--help"}, exitOK, "-server"},
		{[]string{"send-test", "-h"}, exitOK, "-from"},
		{[]string{"board", "--help"}, exitOK, "edgesink board"},
		{[]string{"spool", "--help"}, exitOK, "edgesink spool list"},
		{[]string{"spool", "list", "--help"}, exitOK, "-spool-dir"},
		{[]string{"spool"}, exitUsage, "edgesink spool list"},
		{[]string{"hash-password", "--help"}, exitOK, "bcrypt hash"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"serve", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"--mqtt-broker", "none"}, exitUsage, "no output configured"},
		{[]string{"--smtp-listen", "nowhere"}, exitUsage, "smtp.listen"},
		{[]string{"--config", "/nonexistent.yaml"}, exitUsage, "no such file"},
		{[]string{"version"}, exitOK, "edgesink dev"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(tt.args...)
		want, other := stderr, stdout
		if tt.code == exitOK {
			want, other = stdout, stderr
		}
		if code != tt.code || !strings.Contains(want, tt.out) || other != "" {
			t.Errorf("edgesink %v: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d and %q on std%s, nothing on the other",
				tt.args, code, stdout, stderr, tt.code, tt.out, map[bool]string{true: "out", false: "err"}[tt.code == exitOK])
		}
	}
}

func TestCheckConfig(t *testing.T) {
	code, stdout, _ := runCLI("check-config", exampleConfig)
	if code != exitOK || !strings.Contains(stdout, "OK") || !strings.Contains(stdout, "events: 0 templates of yours before the 22 built-in ones, 0 devices") {
		t.Errorf("example config: exit %d %q", code, stdout)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("smtp:\n  listen: 0.0.0.0:25\n  read_timout: 5s\n"), 0o644)
	code, _, stderr := runCLI("check-config", bad)
	if code != exitUsage || !strings.Contains(stderr, "bad.yaml: line 3: field read_timout not found") {
		t.Errorf("bad config: exit %d %q", code, stderr)
	}
}

func TestSendTestFile(t *testing.T) {
	code, _, stderr := runCLI("send-test", "--server", "127.0.0.1:1", "/nonexistent.eml")
	if code != exitUsage || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d %q", code, stderr)
	}
	code, _, stderr = runCLI("send-test", "--server", "127.0.0.1:1", "--timeout", "2s")
	if code != exitRuntime || !strings.Contains(stderr, "not accepted") {
		t.Errorf("no server: exit %d %q", code, stderr)
	}
}
