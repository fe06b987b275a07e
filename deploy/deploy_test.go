package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/board"
	"github.com/edgesink/edgesink/deploy/doctest"
	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
)

// repoRoot is where make runs.
const repoRoot = ".."

var (
	distOnce sync.Once
	distDir  string
	distErr  error
)

// dist builds every board binary and every package once per test run, with
// the project's own Makefile, into a temporary directory.
func dist(t testing.TB) string {
	t.Helper()
	testtools.RequireTool(t, "make")
	distOnce.Do(func() {
		distDir, distErr = os.MkdirTemp("", "edgesink-dist-")
		if distErr != nil {
			return
		}
		cmd := exec.Command("make", "--no-print-directory", "DIST="+distDir, "cross", "deb")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			distErr = fmt.Errorf("make cross deb: %v\n%s", err, out)
		}
	})
	if distErr != nil {
		t.Fatal(distErr)
	}
	return distDir
}

func TestMain(m *testing.M) {
	// sfdisk, debugfs, mkfs.* live in sbin, which a user's PATH may lack.
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin:/sbin")
	code := m.Run()
	if distDir != "" {
		os.RemoveAll(distDir)
	}
	os.Exit(code)
}

// TestMakefileBoards keeps the Makefile's board table equal to board/.
func TestMakefileBoards(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	inMake := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^target_(\S+)\s*:=\s*(.*)$`).FindAllStringSubmatch(string(mk), -1) {
		inMake[m[1]] = strings.Join(strings.Fields(m[2]), " ")
	}
	list := regexp.MustCompile(`(?m)^BOARDS\s*:=\s*(.*)$`).FindStringSubmatch(string(mk))
	if list == nil {
		t.Fatal("Makefile has no BOARDS list")
	}
	listed := strings.Fields(list[1])
	sort.Strings(listed)
	var names []string
	for _, p := range board.All() {
		names = append(names, p.Name)
		want := strings.TrimSpace(strings.Join([]string{p.GOOS, p.GOARCH, p.GOARM}, " "))
		if inMake[p.Name] != want {
			t.Errorf("Makefile target_%s = %q, board/ says %q", p.Name, inMake[p.Name], want)
		}
	}
	sort.Strings(names)
	if strings.Join(listed, " ") != strings.Join(names, " ") {
		t.Errorf("Makefile BOARDS = %v, board/ has %v", listed, names)
	}
}

// TestFuzzBudgetInREADME checks README's account of make test's fuzzing
// against the Makefile: the mail parser first, then the two AUTH decoders,
// each run for a count of inputs (a duration trips go1.26's fuzzer).
func TestFuzzBudgetInREADME(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	target := regexp.MustCompile(`(?ms)^test:[^\n]*\n((?:\t[^\n]*\n)+)`).FindSubmatch(mk)
	if target == nil {
		t.Fatal("Makefile has no test target")
	}
	runs := regexp.MustCompile(`-fuzz '\^(\w+)\$\$' -fuzztime (\S+)`).FindAllSubmatch(target[1], -1)
	var counts []float64
	for _, m := range runs {
		n, ok := strings.CutSuffix(string(m[2]), "x")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("make test fuzzes %s for %q: want a count of inputs such as 40000x", m[1], m[2])
		}
		counts = append(counts, float64(v))
	}
	said := doctest.Numbers(t, filepath.Join(repoRoot, "README.md"), `\(([\d,]+) inputs to the mail parser, ([\d,]+) to its plain-mail path, ([\d,]+) to its base64 path, ([\d,]+) to each AUTH decoder\)`)
	// Which of README's figures each fuzzer of make test runs for.
	figure := map[string]int{"FuzzExtract": 0, "FuzzPlainPath": 1, "FuzzRunsPath": 2, "FuzzLoginServer": 3, "FuzzPlainServer": 3}
	if len(runs) < 3 {
		t.Fatalf("make test fuzzes %q: want the parser, its fast paths and the AUTH decoders", runs)
	}
	for i, m := range runs {
		f, ok := figure[string(m[1])]
		if !ok {
			t.Errorf("make test fuzzes %s: README's account of the fuzzing does not name it (add it to this test and to README)", m[1])
			continue
		}
		if counts[i] != said[f] {
			t.Errorf("make test fuzzes %s with %.0f inputs; README says %.0f", m[1], counts[i], said[f])
		}
	}
}

// TestCrossBinaries checks every profile's binary is static, stripped,
// for the right machine, under the size budget for ARMv6, and within the
// size range README's build table gives it.
func TestCrossBinaries(t *testing.T) {
	d := dist(t)
	testtools.RequireTool(t, "file")
	for _, p := range board.All() {
		path := filepath.Join(d, "edgesink-"+p.Name)
		out, err := exec.Command("file", "-b", path).Output()
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		desc := string(out)
		wantArch := map[string]string{"arm": "ARM, EABI5", "arm64": "ARM aarch64", "amd64": "x86-64"}[p.GOARCH]
		for _, want := range []string{"ELF", wantArch, "statically linked", "stripped"} {
			if !strings.Contains(desc, want) {
				t.Errorf("%s: file says %q, want %q in it", p.Name, strings.TrimSpace(desc), want)
			}
		}
		if strings.Contains(desc, "not stripped") {
			t.Errorf("%s: not stripped", p.Name)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-12s %10d bytes (%.2f MiB)", p.Name, fi.Size(), float64(fi.Size())/(1<<20))
		low, high := doctest.Range(t, filepath.Join(repoRoot, "README.md"), "\\| `"+regexp.QuoteMeta(p.Name)+"` \\|[^|]*\\|[^|]*\\| ([0-9,]+)–([0-9,]+) \\|")
		if size := float64(fi.Size()); size < low || size > high {
			t.Errorf("%s is %d bytes; README's build table says %.0f–%.0f", p.Name, fi.Size(), low, high)
		}
	}
	// Stamped with the version git describes.
	desc := strings.TrimSpace(runIn(t, repoRoot, "git", "describe", "--tags", "--always", "--dirty"))
	if out := run(t, filepath.Join(d, "edgesink-linux-amd64"), "version"); !strings.HasPrefix(out, "edgesink "+desc+" ") {
		t.Errorf("edgesink version = %q, want it to start with %q", out, "edgesink "+desc)
	}
	// The budget: under 12 MB (12*10^6 bytes) for ARMv6 with everything in.
	if fi, err := os.Stat(filepath.Join(d, "edgesink-pi-zero")); err != nil {
		t.Error(err)
	} else if fi.Size() >= 12_000_000 {
		t.Errorf("ARMv6 binary is %d bytes, over the 12 MB budget", fi.Size())
	}
}

// TestReproducibleBuild builds the ARMv6 binary again from scratch (-a:
// nothing from the build cache) into another directory and compares bytes;
// likewise the armhf package.
func TestReproducibleBuild(t *testing.T) {
	d := dist(t)
	again := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "DIST="+again, "BOARD=pi-zero", "build")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOFLAGS=-a")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, out)
	}
	sameBytes(t, filepath.Join(d, "edgesink-pi-zero"), filepath.Join(again, "edgesink-pi-zero"))

	debs, _ := filepath.Glob(filepath.Join(d, "edgesink_*_armhf.deb"))
	if len(debs) != 1 {
		t.Fatalf("armhf packages: %v", debs)
	}
	version := strings.Split(filepath.Base(debs[0]), "_")[1]
	cmd = exec.Command("go", "run", "./deploy/mkdeb", "-arch", "armhf", "-binary", filepath.Join(again, "edgesink-pi-zero"),
		"-version", version, "-out", again)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+sourceDateEpoch())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkdeb: %v\n%s", err, out)
	}
	sameBytes(t, debs[0], filepath.Join(again, filepath.Base(debs[0])))
}

func sourceDateEpoch() string {
	cmd := exec.Command("git", "log", "-1", "--format=%ct")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		return "0"
	}
	return strings.TrimSpace(string(out))
}

func sameBytes(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ (%d vs %d bytes): the build is not reproducible", filepath.Base(a), b, len(x), len(y))
	}
}

// qemu finds a qemu-user binary under its Debian 12 or 13 name.
func qemu(t testing.TB, arch string) string {
	t.Helper()
	return testtools.RequireOneOf(t, "qemu-"+arch+"-static", "qemu-"+arch)
}

// TestARMBinariesUnderQemu runs each ARM build under qemu-user (the ARMv6
// one on an ARM1176, the Pi Zero's core, so no ARMv7 instruction slips in),
// sends it a mail with swaks and checks the alert that reaches mosquitto.
func TestARMBinariesUnderQemu(t *testing.T) {
	d := dist(t)
	swaks := testtools.RequireTool(t, "swaks")
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	for _, tc := range []struct {
		board, qemuArch, cpu string
	}{
		{"pi-zero", "arm", "arm1176"},
		{"pi-armv7", "arm", "cortex-a7"},
		{"pi-arm64", "aarch64", "cortex-a53"},
	} {
		t.Run(tc.board, func(t *testing.T) {
			emu := qemu(t, tc.qemuArch)
			dir := t.TempDir()
			conf := filepath.Join(dir, "edgesink.yaml")
			device := "qemu-" + tc.board
			writeFile(t, conf, fmt.Sprintf("log:\n  format: json\nsmtp:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n"+
				"mqtt:\n  broker: %s\n  client_id: %s\nspool:\n  dir: %s\n", broker.URL(), device, filepath.Join(dir, "spool")))
			start := time.Now()
			es := startBinary(t, emu, "-cpu", tc.cpu, filepath.Join(d, "edgesink-"+tc.board), "--config", conf)
			t.Logf("%s under qemu: ready after %v", tc.board, time.Since(start).Round(time.Millisecond))

			subject := "Motion on " + tc.board
			out, err := exec.Command(swaks, "--server", es.smtpAddr, "--from", device+"@cams.lan", "--to", "alerts@edgesink.lan",
				"--header", "Subject: "+subject, "--body", "Motion detected on camera 1.", "--silent", "2").CombinedOutput()
			if err != nil {
				t.Fatalf("swaks: %v\n%s\nedgesink said:\n%s", err, out, es.log())
			}
			msg := sub.Next(t, 30*time.Second, func(m mqtttest.Message) bool {
				return m.Topic == "edgesink/"+device+"/alert"
			})
			var a map[string]any
			if err := json.Unmarshal([]byte(msg.Payload), &a); err != nil {
				t.Fatalf("alert is not JSON: %v: %s", err, msg.Payload)
			}
			if text, _ := a["text"].(string); strings.TrimSpace(text) != "Motion detected on camera 1." {
				t.Errorf("text = %q (alert %s)", text, msg.Payload)
			}
			want := map[string]any{"device": device, "mail_from": device + "@cams.lan", "subject": subject,
				"from": []any{device + "@cams.lan"}, "rcpt_to": []any{"alerts@edgesink.lan"}}
			for k, v := range want {
				if got := a[k]; fmt.Sprint(got) != fmt.Sprint(v) {
					t.Errorf("%s = %#v, want %#v (alert %s)", k, got, v, msg.Payload)
				}
			}
			if id, _ := a["id"].(string); id == "" {
				t.Errorf("alert has no id: %s", msg.Payload)
			}
		})
	}
}

// binary is one edgesink process under test.
type binary struct {
	smtpAddr string
	pid      int
	mu       sync.Mutex
	stderr   bytes.Buffer
}

func (b *binary) log() string { b.mu.Lock(); defer b.mu.Unlock(); return b.stderr.String() }

// startBinary runs argv until the test ends (SIGTERM, then a clean exit is
// required) and returns once its JSON log says it is ready.
func startBinary(t testing.TB, argv ...string) *binary {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &binary{pid: cmd.Process.Pid}
	ready := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.stderr.WriteString(line + "\n")
			b.mu.Unlock()
			var rec struct{ Msg, SMTP string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "edgesink ready" {
				ready <- rec.SMTP
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
	}()
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited with %v after SIGINT\n%s", filepath.Base(argv[len(argv)-3]), err, b.log())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("no exit within 30s of SIGINT\n%s", b.log())
		}
	})
	select {
	case b.smtpAddr = <-ready:
	case err := <-exited:
		t.Fatalf("exited before ready: %v\n%s", err, b.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("not ready after 60s\n%s", b.log())
	}
	return b
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// debArch maps each package to the board binary it carries.
var debArch = map[string]string{"armhf": "pi-zero", "arm64": "pi-arm64", "amd64": "linux-amd64"}

// TestDebPackages inspects each .deb with dpkg-deb, installs it into a
// throwaway root with dpkg --root (maintainer scripts included: they honour
// DPKG_ROOT), checks the result and verifies the installed unit with
// systemd-analyze; then removes and purges it again.
func TestDebPackages(t *testing.T) {
	d := dist(t)
	dpkgDeb := testtools.RequireTool(t, "dpkg-deb")
	dpkg := testtools.RequireTool(t, "dpkg")
	testtools.RequireTool(t, "systemd-sysusers")
	analyze := testtools.RequireTool(t, "systemd-analyze")
	for arch, boardName := range debArch {
		t.Run(arch, func(t *testing.T) {
			debs, _ := filepath.Glob(filepath.Join(d, "edgesink_*_"+arch+".deb"))
			if len(debs) != 1 {
				t.Fatalf("packages for %s: %v", arch, debs)
			}
			deb := debs[0]
			info := run(t, dpkgDeb, "-I", deb)
			for _, want := range []string{"Package: edgesink", "Architecture: " + arch, "Depends: adduser", "Section: net",
				"conffiles", "postinst", "prerm", "postrm"} {
				if !strings.Contains(info, want) {
					t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
				}
			}
			if got := run(t, dpkgDeb, "-f", deb, "Version"); !regexp.MustCompile(`^[0-9]`).MatchString(got) {
				t.Errorf("version %q does not start with a digit", got)
			}
			conffiles := runIn(t, "", "sh", "-c", dpkgDeb+" --ctrl-tarfile "+deb+" | tar -xOf - ./conffiles")
			if strings.TrimSpace(conffiles) != "/etc/edgesink/edgesink.yaml" {
				t.Errorf("conffiles = %q, want only /etc/edgesink/edgesink.yaml", conffiles)
			}
			listing := run(t, dpkgDeb, "-c", deb)
			for _, want := range []string{
				"-rwxr-xr-x root/root .* ./usr/bin/edgesink",
				"-rw-r--r-- root/root .* ./lib/systemd/system/edgesink.service",
				"-rw-r--r-- root/root .* ./usr/lib/sysusers.d/edgesink.conf",
				"-rw-r----- root/root .* ./etc/edgesink/edgesink.yaml",
				"drwxr-x--- root/root .* ./var/lib/edgesink/",
			} {
				if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(listing) {
					t.Errorf("dpkg-deb -c: no line like %q in\n%s", want, listing)
				}
			}

			root := t.TempDir()
			for _, dir := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
				if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), "")
			dpkgArgs := []string{"--root=" + root, "--log=/dev/null", "--force-script-chrootless", "--force-not-root",
				"--force-depends", "--force-architecture"}
			run(t, dpkg, append(dpkgArgs, "-i", deb)...)

			bin, err := os.ReadFile(filepath.Join(root, "usr/bin/edgesink"))
			if err != nil {
				t.Fatal(err)
			}
			built, _ := os.ReadFile(filepath.Join(d, "edgesink-"+boardName))
			if !bytes.Equal(bin, built) {
				t.Errorf("installed binary is not the %s build", boardName)
			}
			passwd := readFile(t, filepath.Join(root, "etc/passwd"))
			m := regexp.MustCompile(`(?m)^edgesink:x:(\d+):(\d+):[^:]*:/var/lib/edgesink:\S*nologin$`).FindStringSubmatch(passwd)
			if m == nil {
				t.Fatalf("no edgesink system user in the root's /etc/passwd:\n%s", passwd)
			}
			if group := readFile(t, filepath.Join(root, "etc/group")); !regexp.MustCompile(`(?m)^dialout:x:\d+:.*\bedgesink\b`).MatchString(group) {
				t.Errorf("edgesink is not in group dialout:\n%s", group)
			}
			assertOwner(t, filepath.Join(root, "var/lib/edgesink"), m[1], m[2], 0o750)
			assertOwner(t, filepath.Join(root, "etc/edgesink/edgesink.yaml"), "0", m[2], 0o640)
			link, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/edgesink.service"))
			if err != nil || !strings.HasSuffix(link, "/systemd/system/edgesink.service") {
				t.Errorf("service not enabled: %q %v", link, err)
			}

			// systemd-analyze checks the installed unit; ExecStart must name
			// an executable, so it points at the installed binary.
			unit := readFile(t, filepath.Join(root, "lib/systemd/system/edgesink.service"))
			unit = strings.ReplaceAll(unit, "/usr/bin/edgesink", filepath.Join(root, "usr/bin/edgesink"))
			check := filepath.Join(t.TempDir(), "edgesink.service")
			writeFile(t, check, unit)
			if out, err := exec.Command(analyze, "verify", "--man=no", check).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}

			run(t, dpkg, append(dpkgArgs, "-r", "edgesink")...)
			if _, err := os.Stat(filepath.Join(root, "usr/bin/edgesink")); !os.IsNotExist(err) {
				t.Errorf("binary left after remove: %v", err)
			}
			if _, err := os.Stat(filepath.Join(root, "etc/edgesink/edgesink.yaml")); err != nil {
				t.Errorf("conffile gone after remove (only purge may take it): %v", err)
			}
			run(t, dpkg, append(dpkgArgs, "-P", "edgesink")...)
			for _, gone := range []string{"etc/edgesink/edgesink.yaml", "var/lib/edgesink",
				"etc/systemd/system/multi-user.target.wants/edgesink.service"} {
				if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
					t.Errorf("%s left after purge", gone)
				}
			}
		})
	}
}

// TestUnitHardening keeps the unit's promises: notify readiness, no root,
// port 25 by capability, state directory, the serial port reachable.
func TestUnitHardening(t *testing.T) {
	unit := readFile(t, "edgesink.service")
	for _, want := range []string{"Type=notify", "User=edgesink", "SupplementaryGroups=dialout",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
		"StateDirectory=edgesink", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "DevicePolicy=closed",
		"DeviceAllow=char-ttyAMA rw", "DeviceAllow=char-ttyUSB rw", "Restart=on-failure", "RestartPreventExitStatus=2"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(unit) {
			t.Errorf("edgesink.service lacks %q", want)
		}
	}
	if strings.Contains(unit, "PrivateDevices=yes") {
		t.Error("PrivateDevices=yes hides the serial port")
	}
}

// TestImage builds a small disk image laid out as Raspberry Pi OS is (MBR,
// FAT32 boot partition, ext4 root with a user database), compresses it with
// xz, runs 'make image' on it and reads the result back with debugfs.
func TestImage(t *testing.T) {
	d := dist(t)
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mkfs.ext4", "debugfs", "xz", "systemd-sysusers"} {
		testtools.RequireTool(t, tool)
	}
	work := t.TempDir()
	tree := filepath.Join(work, "rootfs")
	for _, dir := range []string{"etc/systemd/system/multi-user.target.wants", "usr/bin", "usr/lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(tree, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"etc/os-release": "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
		"etc/passwd":     "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
		"etc/group":      "root:x:0:\ndialout:x:20:pi\nshadow:x:42:\npi:x:1000:\n",
		"etc/shadow":     "root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n",
		"etc/gshadow":    "root:*::\ndialout:*::pi\nshadow:*::\npi:!::\n",
	} {
		writeFile(t, filepath.Join(tree, name), data)
	}
	const bootStart, rootStart = 8192, 8192 + 65536 // sectors, as Raspberry Pi OS
	img := filepath.Join(work, "raspios-test-armhf-lite.img")
	runIn(t, work, "truncate", "-s", "80M", img)
	runIn(t, work, "sh", "-c", fmt.Sprintf("printf 'label: dos\\nstart=%d, size=65536, type=c\\nstart=%d, type=83\\n' | sfdisk -q %s", bootStart, rootStart, img))
	runIn(t, work, "truncate", "-s", "32M", "boot.fat")
	runIn(t, work, "mkfs.vfat", "-F", "32", "-n", "BOOTFS", "boot.fat")
	runIn(t, work, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", tree, "root.ext4", "40M")
	runIn(t, work, "dd", "if=boot.fat", "of="+img, "bs=512", fmt.Sprintf("seek=%d", bootStart), "conv=notrunc", "status=none")
	runIn(t, work, "dd", "if=root.ext4", "of="+img, "bs=512", fmt.Sprintf("seek=%d", rootStart), "conv=notrunc", "status=none")
	runIn(t, work, "xz", "-T0", "-0", img)

	out := runIn(t, repoRoot, "make", "--no-print-directory", "DIST="+d, "image", "BASE="+img+".xz")
	result := filepath.Join(d, "edgesink-armhf.img")
	if !strings.Contains(out, "is ready") {
		t.Errorf("make image said:\n%s", out)
	}
	rootfs := fmt.Sprintf("%s?offset=%d", result, rootStart*512)
	debugfs := func(req string) string {
		t.Helper()
		return runIn(t, "", "debugfs", "-R", req, rootfs)
	}
	dump := filepath.Join(work, "edgesink.dumped")
	debugfs("dump /usr/bin/edgesink " + dump)
	sameBytes(t, filepath.Join(d, "edgesink-pi-zero"), dump)
	passwd := debugfs("cat /etc/passwd")
	if !strings.Contains(passwd, "pi:x:1000:1000") || !regexp.MustCompile(`(?m)^edgesink:x:\d+:\d+:`).MatchString(passwd) {
		t.Errorf("image /etc/passwd:\n%s", passwd)
	}
	if group := debugfs("cat /etc/group"); !regexp.MustCompile(`(?m)^dialout:x:20:(pi,edgesink|edgesink,pi)$`).MatchString(group) {
		t.Errorf("image /etc/group:\n%s", group)
	}
	if got, want := debugfs("cat /etc/edgesink/edgesink.yaml"), readFile(t, "edgesink.yaml"); got != want {
		t.Error("image config differs from deploy/edgesink.yaml")
	}
	if got, want := debugfs("cat /usr/lib/systemd/system/edgesink.service"), readFile(t, "edgesink.service"); got != want {
		t.Error("image unit differs from deploy/edgesink.service")
	}
	for path, want := range map[string]string{
		"/usr/bin/edgesink":           `Mode:\s+0755`,
		"/etc/edgesink/edgesink.yaml": `Mode:\s+0640`,
		"/etc/shadow":                 `Mode:\s+0640`,
		"/etc/systemd/system/multi-user.target.wants/edgesink.service": `Type: symlink`,
	} {
		st := debugfs("stat " + path)
		if !regexp.MustCompile(want).MatchString(st) || !regexp.MustCompile(`User:\s+0\s`).MatchString(st) {
			t.Errorf("%s in the image: want %s, owner root:\n%s", path, want, st)
		}
	}
	if ls := debugfs("ls /"); !strings.Contains(ls, "etc") {
		t.Errorf("root partition unreadable after writing: %s", ls)
	}
	// The boot partition is left as it was, and still a FAT file system.
	if out := runIn(t, "", "sfdisk", "-d", result); !strings.Contains(out, "type=c") || !strings.Contains(out, "type=83") {
		t.Errorf("partition table changed:\n%s", out)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return runIn(t, "", name, args...)
}

func runIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFirstBoot runs the first-boot script as the Pi would, against a boot
// directory holding the packages and a config, installing into a tree; a
// second run must change nothing.
func TestFirstBoot(t *testing.T) {
	d := dist(t)
	testtools.RequireTool(t, "dpkg")
	testtools.RequireTool(t, "systemd-sysusers")
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
	if debArch[arch] == "" {
		testtools.Unavailable(t, "no package for this machine's architecture %s", arch)
	}
	boot := t.TempDir()
	src := filepath.Join(boot, "edgesink")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(d, "edgesink_*.deb"))
	for _, deb := range debs {
		runIn(t, "", "cp", deb, src)
	}
	config := "smtp:\n  listen: 0.0.0.0:25\nmqtt:\n  broker: tcp://homeassistant.lan:1883\n"
	writeFile(t, filepath.Join(src, "edgesink.yaml"), config)
	root := t.TempDir()
	for _, dir := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), "")
	script, _ := filepath.Abs("firstboot/edgesink-firstboot.sh")
	env := append(os.Environ(), "BOOT="+boot, "DPKG_ROOT="+root, "DPKG_OPTS=--force-depends --force-not-root --log=/dev/null")
	for i := 0; i < 2; i++ {
		cmd := exec.Command("sh", script)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d: %v\n%s\n%s", i+1, err, out, readFile(t, filepath.Join(root, "var/log/edgesink-firstboot.log")))
		}
	}
	if got := readFile(t, filepath.Join(root, "etc/edgesink/edgesink.yaml")); got != config {
		t.Errorf("installed config:\n%s\nwant the one from the boot partition", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/edgesink.service")); err != nil {
		t.Errorf("service not enabled: %v\n%s", err, readFile(t, filepath.Join(root, "var/log/edgesink-firstboot.log")))
	}
	logText := readFile(t, filepath.Join(root, "var/log/edgesink-firstboot.log"))
	if !strings.Contains(logText, "edgesink installed: ") || !strings.Contains(logText, "already installed; nothing to do") {
		t.Errorf("first-boot log:\n%s", logText)
	}
}
