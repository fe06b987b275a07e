package extract_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink/extract"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// BenchmarkExtract measures Extract on the two mails make bench sends: the
// 4 KiB plain-text alert (no Content-Type, CRLF lines) and the ~617 KB
// camera mail with three base64 JPEG snapshots.
func BenchmarkExtract(b *testing.B) {
	_, text := smtptest.AlertMail(0, 4096)
	_, camera := smtptest.CameraMail(0)
	env := extract.Envelope{
		ReceivedAt: time.Date(2026, 11, 21, 3, 14, 7, 0, time.UTC),
		RemoteAddr: "192.0.2.10:40000",
		Helo:       "device.lan",
		MailFrom:   "load@cams.lan",
		RcptTo:     []string{"alerts@edgesink.lan"},
	}
	for _, bm := range []struct {
		name string
		raw  []byte
	}{{"text4k", text}, {"camera", camera}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.raw)))
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := extract.Extract(bm.raw, env); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time of the process (GC included) per mail: steadier than
			// wall time on a shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the user and system CPU time the process has used, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
