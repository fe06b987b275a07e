package testtools

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recordTB stands in for the testing.TB of a test that needs a tool, and
// records whether it failed or skipped.
type recordTB struct {
	testing.TB
	failed, skipped string
}

func (r *recordTB) Helper() {}

func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// requireIn runs RequireOneOf as a test would, in a goroutine of its own
// (Fatalf and Skipf end it), and reports what happened.
func requireIn(t *testing.T, extra []string, names ...string) (path string, r *recordTB) {
	r = &recordTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = requireOneOf(r, extra, names...)
	}()
	<-done
	return path, r
}

func TestMissingToolFailsUnderCI(t *testing.T) {
	for _, ci := range []string{"true", "1", "yes"} {
		t.Setenv("CI", ci)
		_, r := requireIn(t, sbinDirs, "edgesink-no-such-tool")
		if r.failed == "" || r.skipped != "" {
			t.Errorf("CI=%s: failed %q, skipped %q; want a failure", ci, r.failed, r.skipped)
		}
	}
	t.Setenv("CI", "")
	_, r := requireIn(t, sbinDirs, "edgesink-no-such-tool")
	if r.skipped == "" || r.failed != "" {
		t.Errorf("outside CI: failed %q, skipped %q; want a skip", r.failed, r.skipped)
	}
}

// TestMissingToolNamesPackage hides real tools (empty PATH, no sbin
// directories): the failure names the Debian package that has them.
func TestMissingToolNamesPackage(t *testing.T) {
	t.Setenv("CI", "1")
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct {
		names []string
		pkg   string
	}{
		{[]string{"mosquitto_sub"}, "mosquitto-clients"},
		{[]string{"mosquitto"}, "mosquitto"},
		{[]string{"debugfs"}, "e2fsprogs"},
		{[]string{"qemu-arm-static", "qemu-arm"}, "qemu-user-static"},
	} {
		_, r := requireIn(t, nil, tc.names...)
		if !strings.Contains(r.failed, tc.names[0]) || !strings.Contains(r.failed, "apt-get install "+tc.pkg) {
			t.Errorf("%v: message %q does not name the tool and package %s", tc.names, r.failed, tc.pkg)
		}
	}
}

// TestToolInSbinFound: a tool outside PATH, in an sbin directory, is found.
func TestToolInSbinFound(t *testing.T) {
	sbin := t.TempDir()
	tool := filepath.Join(sbin, "edgesink-fake-daemon")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sbin, "not-executable"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	if got, err := lookTool("edgesink-fake-daemon", []string{"/nonexistent", sbin}); err != nil || got != tool {
		t.Errorf("lookTool = %q, %v; want %s", got, err, tool)
	}
	if got, err := lookTool("not-executable", []string{sbin}); err == nil {
		t.Errorf("a file without x bits was taken for a tool: %s", got)
	}
	if _, err := lookTool("edgesink-fake-daemon", nil); err == nil {
		t.Error("found without the sbin directory")
	}
	if got, r := requireIn(t, []string{sbin}, "edgesink-missing", "edgesink-fake-daemon"); got != tool || r.failed != "" || r.skipped != "" {
		t.Errorf("requireOneOf = %q (failed %q, skipped %q); want the second name, %s", got, r.failed, r.skipped, tool)
	}
}
