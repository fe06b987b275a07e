package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/doctest"
	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// footprint is what one build costs to run.
type footprint struct {
	name             string
	ready            time.Duration // exec to "edgesink ready"
	idleRSS, peakRSS int64         // KiB
	idleCPU          time.Duration // CPU used in idleFor while idle
	loadRate         float64       // mails/s under the load
}

const (
	idleFor     = 3 * time.Second
	loadSenders = 20
)

// BenchmarkFootprint (make bench) starts each build, on this host and the
// ARM ones under qemu-user, and reports start-to-ready time, idle RSS, CPU
// used while idle (a busy loop would show here) and peak RSS after 20
// senders' load of 4 KiB mails, with the disk spool and a real mosquitto.
// Under qemu, RSS includes the emulator's own memory and its translated
// code, and times are slower than on a board: read them as upper bounds.
func BenchmarkFootprint(b *testing.B) {
	d := dist(b)
	broker := mqtttest.StartMosquitto(b)
	host := filepath.Join(d, "edgesink-linux-amd64")
	targets := []struct {
		name string
		argv []string
		mail int
	}{
		{"linux-amd64 (native)", []string{host}, 4000},
		{"pi-zero (qemu arm1176)", []string{qemu(b, "arm"), "-cpu", "arm1176", filepath.Join(d, "edgesink-pi-zero")}, 600},
		{"pi-armv7 (qemu cortex-a7)", []string{qemu(b, "arm"), "-cpu", "cortex-a7", filepath.Join(d, "edgesink-pi-armv7")}, 600},
		{"pi-arm64 (qemu cortex-a53)", []string{qemu(b, "aarch64"), "-cpu", "cortex-a53", filepath.Join(d, "edgesink-pi-arm64")}, 600},
	}
	var rows []footprint
	for _, tg := range targets {
		rows = append(rows, measure(b, tg.name, tg.argv, broker.URL(), tg.mail))
	}
	b.ReportMetric(float64(rows[0].ready.Microseconds())/1000, "ready-ms")
	b.ReportMetric(float64(rows[0].idleRSS)/1024, "idle-RSS-MiB")
	b.ReportMetric(float64(rows[0].peakRSS)/1024, "peak-RSS-MiB")
	fmt.Printf("\nfootprint: disk spool, mosquitto; load = %d senders of 4 KiB mails\n", loadSenders)
	fmt.Printf("  %-28s %10s %10s %14s %10s %12s\n", "build", "ready", "idle RSS", "idle CPU/3 s", "peak RSS", "load msgs/s")
	for _, r := range rows {
		fmt.Printf("  %-28s %8.0fms %7.1fMiB %12.0fms %7.1fMiB %12.0f\n", r.name, float64(r.ready.Microseconds())/1000,
			float64(r.idleRSS)/1024, float64(r.idleCPU.Microseconds())/1000, float64(r.peakRSS)/1024, r.loadRate)
	}
	fmt.Println()

	// README's bounds: the first row is native, the others run under qemu.
	readme := filepath.Join(repoRoot, "README.md")
	native := doctest.Numbers(b, readme, `the native build's idle RSS exceeds (\d+) MiB or its peak RSS (\d+) MiB`)
	emulated := doctest.Numbers(b, readme, `an emulated build's idle RSS exceeds (\d+) MiB or its peak RSS (\d+) MiB`)
	for i, r := range rows {
		bound := emulated
		if i == 0 {
			bound = native
		}
		if idle := float64(r.idleRSS) / 1024; idle > bound[0] {
			b.Errorf("%s: idle RSS %.1f MiB, over README's %g MiB", r.name, idle, bound[0])
		}
		if peak := float64(r.peakRSS) / 1024; peak > bound[1] {
			b.Errorf("%s: peak RSS %.1f MiB, over README's %g MiB", r.name, peak, bound[1])
		}
	}
}

func measure(b *testing.B, name string, argv []string, brokerURL string, mails int) footprint {
	dir := b.TempDir()
	conf := filepath.Join(dir, "edgesink.yaml")
	// The load comes from one address: the per-address limits are lifted.
	writeFile(b, conf, fmt.Sprintf("log:\n  format: json\nhttp:\n  listen: 127.0.0.1:0\nsmtp:\n  listen: 127.0.0.1:0\n"+
		"  max_connections_per_ip: 100\n  max_mails_per_minute: 1000000\n"+
		"mqtt:\n  broker: %s\n  client_id: footprint-%d\nspool:\n  dir: %s\n", brokerURL, time.Now().UnixNano(), filepath.Join(dir, "spool")))
	start := time.Now()
	es := startBinary(b, append(argv, "--config", conf)...)
	f := footprint{name: name, ready: time.Since(start)}
	time.Sleep(500 * time.Millisecond) // let start-up settle
	cpu0 := cpuTime(b, es.pid)
	time.Sleep(idleFor)
	f.idleCPU = cpuTime(b, es.pid) - cpu0
	f.idleRSS = testtools.ProcStatusKiB(b, es.pid, "VmRSS")
	elapsed, err := smtptest.Load{Addr: es.smtpAddr, Senders: loadSenders, N: mails,
		Mail: func(i int) (string, []byte) { return smtptest.AlertMail(i, 4<<10) }}.Run()
	if err != nil {
		b.Fatalf("%s: load: %v", name, err)
	}
	f.loadRate = float64(mails) / elapsed.Seconds()
	f.peakRSS = testtools.ProcStatusKiB(b, es.pid, "VmHWM")
	return f
}

// cpuTime is the user+system CPU time of pid so far (/proc/PID/stat,
// fields 14 and 15, in clock ticks of 10 ms on Linux).
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces; count from after it.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
