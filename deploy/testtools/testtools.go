// Package testtools finds the programs edgesink's tests talk to (mosquitto,
// socat, swaks, qemu-user, dpkg, sfdisk, …), which .ci/test-deps installs.
//
// Tools are looked up on PATH and in /usr/sbin and /sbin. A missing tool
// skips the test on a developer machine (naming the Debian package; make
// test installs it) and fails it when CI is set to anything: CI never
// passes by skipping.
package testtools

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sbinDirs are searched after PATH: mosquitto, sfdisk, debugfs and mkfs.*
// live there, and a normal user's PATH often lacks them.
var sbinDirs = []string{"/usr/sbin", "/sbin"}

// debianPackage names the package that installs a tool, for the message a
// missing tool gives (.ci/test-deps installs the same list).
var debianPackage = map[string]string{
	"mosquitto": "mosquitto", "mosquitto_passwd": "mosquitto",
	"mosquitto_sub": "mosquitto-clients", "mosquitto_pub": "mosquitto-clients",
	"socat": "socat", "swaks": "swaks",
	"qemu-arm-static": "qemu-user-static", "qemu-aarch64-static": "qemu-user-static",
	"qemu-arm": "qemu-user-static", "qemu-aarch64": "qemu-user-static",
	"dpkg": "dpkg", "dpkg-deb": "dpkg",
	"systemd-sysusers": "systemd", "systemd-analyze": "systemd",
	"sfdisk": "fdisk", "mkfs.vfat": "dosfstools", "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs",
	"xz": "xz-utils", "file": "file", "make": "make", "mount": "mount", "umount": "mount",
	"useradd": "passwd", "userdel": "passwd",
	"chromium": "chromium",
}

// LookTool finds an external program on PATH, else in /usr/sbin or /sbin.
func LookTool(name string) (string, error) {
	return lookTool(name, sbinDirs)
}

func lookTool(name string, extra []string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range extra {
		p := filepath.Join(dir, name)
		if fi, statErr := os.Stat(p); statErr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// RequireTool returns the path of an external program the test needs. See
// RequireOneOf for what happens when it is missing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	return RequireOneOf(t, name)
}

// RequireOneOf returns the path of the first of names found (one tool
// under its names on different Debian releases). If none is found, the
// test fails under CI (CI set to anything) and is skipped otherwise; the
// message names the Debian package to install.
func RequireOneOf(t testing.TB, names ...string) string {
	t.Helper()
	return requireOneOf(t, sbinDirs, names...)
}

func requireOneOf(t testing.TB, extra []string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := lookTool(name, extra); err == nil {
			return p
		}
	}
	pkg := debianPackage[names[0]]
	if pkg == "" {
		pkg = names[0]
	}
	Unavailable(t, "%s not found on PATH, /usr/sbin or /sbin (Debian package %s: make test installs it, or apt-get install %s)",
		strings.Join(names, " or "), pkg, pkg)
	return ""
}

// Unavailable ends a test that cannot run here: under CI (the CI variable
// set to anything non-empty) it fails, since CI must run every test; on a
// developer's machine it skips with the reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI=%s: "+format, append([]any{os.Getenv("CI")}, args...)...)
	}
	t.Skipf(format, args...)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ProcStatusKiB reads a kB field of /proc/PID/status (VmRSS, VmHWM, …).
func ProcStatusKiB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
