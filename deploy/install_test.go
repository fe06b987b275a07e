package deploy

import (
	"github.com/edgesink/edgesink/deploy/testtools"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// standInHost is a directory of programs that play a Raspberry Pi reached
// over SSH, for install.sh: ssh runs the command here, with the host's /etc
// and /tmp mapped into a tree; dpkg installs into that tree (dpkg --root,
// maintainer scripts included); sudo just runs its command; systemctl
// is-active says "active" only when the unit is enabled in the tree, and
// passes everything else to the real systemctl. Every call is logged.
var standInHost = map[string]string{
	"ssh": `#!/bin/sh
host=$1; shift
echo "ssh $host $*" >> "$STUBLOG"
cmd=$(printf '%s' "$*" | sed -e "s#/tmp/#$HOSTTMP/#g" -e "s#/etc/edgesink#$ROOT/etc/edgesink#g")
PATH="$STUBS:$ROOT/usr/bin:$PATH" exec sh -c "$cmd"
`,
	"scp": `#!/bin/sh
[ "$1" = -q ] && shift
echo "scp $*" >> "$STUBLOG"
exec cp "$1" "$HOSTTMP/$(basename "${2#*:}")"
`,
	"sudo": `#!/bin/sh
echo "sudo $*" >> "$STUBLOG"
exec "$@"
`,
	"dpkg": `#!/bin/sh
[ "$1" = --print-architecture ] && exec "$REAL_DPKG" "$@"
exec "$REAL_DPKG" --root="$ROOT" --log=/dev/null --force-script-chrootless --force-not-root --force-depends "$@"
`,
	"systemctl": `#!/bin/sh
echo "systemctl $*" >> "$STUBLOG"
if [ "$1" = is-active ]; then
	[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/$2.service" ] && { echo active; exit 0; }
	echo inactive; exit 3
fi
exec "$REAL_SYSTEMCTL" "$@"
`,
}

// TestInstallScript runs deploy/install.sh end to end against a stand-in
// host: it must go all the way (package installed, config in place and
// checked by the installed binary, service enabled) and say it is done.
func TestInstallScript(t *testing.T) {
	d := dist(t)
	realDpkg := testtools.RequireTool(t, "dpkg")
	realSystemctl := testtools.RequireTool(t, "systemctl")
	testtools.RequireTool(t, "systemd-sysusers")
	bash := testtools.RequireTool(t, "bash")
	if os.Geteuid() != 0 {
		// The package's postinst chowns the state directory to the new
		// system user, as on a real host.
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs the tests as root; this one needs it")
		}
		t.Skip("needs root: the package's postinst chowns to the edgesink user")
	}
	arch := strings.TrimSpace(run(t, realDpkg, "--print-architecture"))
	if debArch[arch] == "" {
		t.Skipf("no package for this machine's architecture %s", arch)
	}

	work := t.TempDir()
	stubs, root, hostTmp := filepath.Join(work, "stubs"), filepath.Join(work, "root"), filepath.Join(work, "hosttmp")
	for _, dir := range []string{stubs, hostTmp, filepath.Join(root, "var/lib/dpkg/info"), filepath.Join(root, "var/lib/dpkg/updates"), filepath.Join(root, "etc")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), "")
	for name, script := range standInHost {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stubLog := filepath.Join(work, "calls.log")
	config := filepath.Join(work, "my-edgesink.yaml")
	const myConfig = "site: garage\nsmtp:\n  listen: 0.0.0.0:25\nmqtt:\n  broker: tcp://homeassistant.lan:1883\n"
	writeFile(t, config, myConfig)

	script, _ := filepath.Abs("install.sh")
	cmd := exec.Command(bash, script, "-c", config, "pi@raspberrypi.local")
	cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"), "DIST="+d, "ROOT="+root, "HOSTTMP="+hostTmp,
		"STUBS="+stubs, "STUBLOG="+stubLog, "REAL_DPKG="+realDpkg, "REAL_SYSTEMCTL="+realSystemctl)
	out, err := cmd.CombinedOutput()
	calls, _ := os.ReadFile(stubLog)
	if err != nil {
		t.Fatalf("install.sh: %v\n%s\ncalls:\n%s", err, out, calls)
	}
	for _, want := range []string{
		"install: " + d, "(" + arch + ")",
		root + "/etc/edgesink/edgesink.yaml: OK", // check-config, by the installed binary
		"client id edgesink-", "status on edgesink/garage/status",
		"active",
		"install: done",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("install.sh output lacks %q:\n%s\ncalls:\n%s", want, out, calls)
		}
	}
	t.Logf("install.sh said:\n%s", out)
	if !regexp.MustCompile(`(?m)^sudo edgesink check-config --config \S+/etc/edgesink/edgesink.yaml$`).Match(calls) {
		t.Errorf("check-config was not run on the installed config:\n%s", calls)
	}
	if got := readFile(t, filepath.Join(root, "etc/edgesink/edgesink.yaml")); got != myConfig {
		t.Errorf("installed config:\n%s\nwant the one given with -c", got)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/edgesink")); err != nil {
		t.Errorf("binary not installed: %v", err)
	}
	if left, _ := os.ReadDir(hostTmp); len(left) != 0 {
		t.Errorf("install.sh left files in the host's /tmp: %v", left)
	}
}
