package main

// make bench: throughput and latency of the whole path (SMTP in, MQTT out
// to a real mosquitto, acknowledged) beside the ceiling, a bare go-smtp
// server that discards mail, under the same load in the same run.
//
// go-smtp is imported here only to build that ceiling; edgesink itself
// reaches go-smtp through the sink package alone.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

const (
	benchSenders  = 20
	benchMailSize = 4 << 10
)

// loadResult is what one load run measured.
type loadResult struct {
	n         int
	elapsed   time.Duration
	latencies []time.Duration
}

func (r loadResult) perSecond() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// runLoad sends n mails of benchMailSize over benchSenders connections.
func runLoad(b *testing.B, addr string, n int, endOfData func(token string), done func(token string)) time.Duration {
	b.Helper()
	elapsed, err := smtptest.Load{Addr: addr, Senders: benchSenders, N: n,
		Mail:      func(i int) (string, []byte) { return smtptest.AlertMail(i, benchMailSize) },
		EndOfData: endOfData, Accepted: done}.Run()
	if err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// discardBackend is the ceiling: go-smtp reading and dropping every mail.
type discardBackend struct{}

func (discardBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return discardSession{}, nil }

type discardSession struct{}

func (discardSession) Reset()                                 {}
func (discardSession) Logout() error                          { return nil }
func (discardSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error                 { _, err := io.Copy(io.Discard, r); return err }
func (discardSession) AuthMechanisms() []string               { return nil }

func benchCeiling(b *testing.B, n int) loadResult {
	srv := gosmtp.NewServer(discardBackend{})
	srv.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	var mu sync.Mutex
	started := make(map[string]time.Time, n)
	res := loadResult{n: n, latencies: make([]time.Duration, 0, n)}
	res.elapsed = runLoad(b, l.Addr().String(), n,
		func(tok string) { mu.Lock(); started[tok] = time.Now(); mu.Unlock() },
		func(tok string) {
			mu.Lock()
			res.latencies = append(res.latencies, time.Since(started[tok]))
			mu.Unlock()
		})
	return res
}

func benchEdgesink(b *testing.B, n int, spoolMode string) loadResult {
	broker := mqtttest.StartMosquitto(b)
	sub := mqtttest.Subscribe(b, broker.Addr(), "edgesink/+/alert")

	cfg := DefaultConfig()
	cfg.SMTP.Listen = Addrs{"127.0.0.1:0"}
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Broker = broker.URL()
	cfg.MQTT.ClientID = "edgesink-bench"
	cfg.Spool.Mode = spoolMode
	cfg.Spool.Dir = b.TempDir()
	cfg.SMTP.Policy.MaxConnectionsPerIP, cfg.SMTP.Policy.MailsPerMinute = 100, 1_000_000 // the load comes from one address
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan readyInfo, 1)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, cfg, log, func(r readyInfo) { ready <- r }) }()
	defer func() { cancel(); <-served }()
	var addr string
	select {
	case r := <-ready:
		addr = r.SMTPAddr
	case err := <-served:
		b.Fatal(err)
	}

	var mu sync.Mutex
	started := make(map[string]time.Time, n)
	arrived := make(map[string]time.Time, n)
	all := make(chan struct{})
	go func() {
		for m := range sub.C() {
			// Payload holds "subject":"load-N"; the token is what matters.
			i := strings.Index(m.Payload, `"subject":"load-`)
			if i < 0 {
				continue
			}
			tok := m.Payload[i+len(`"subject":"`):]
			tok = tok[:strings.IndexByte(tok, '"')]
			mu.Lock()
			if _, dup := arrived[tok]; !dup {
				arrived[tok] = time.Now()
			}
			full := len(arrived) == n
			mu.Unlock()
			if full {
				close(all)
				return
			}
		}
	}()
	res := loadResult{n: n}
	start := time.Now()
	runLoad(b, addr, n,
		func(tok string) { mu.Lock(); started[tok] = time.Now(); mu.Unlock() },
		func(string) {})
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		b.Fatalf("only %d of %d alerts reached the subscriber", len(arrived), n)
	}
	// Throughput is counted until the last alert reached the subscriber, so
	// a spool that answers fast but delivers slowly gains nothing.
	res.elapsed = time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	for tok, t0 := range started {
		res.latencies = append(res.latencies, arrived[tok].Sub(t0))
	}
	return res
}

// BenchmarkEndToEnd reports, for 20 concurrent senders of 4 KiB mails:
// edgesink's messages per second and its p50/p99 latency from the end of
// DATA to the alert reaching an MQTT subscriber through mosquitto, with the
// disk spool, the memory spool and no spool; the same for the bare go-smtp
// ceiling (end of DATA to 250); and each one's share of the ceiling.
func BenchmarkEndToEnd(b *testing.B) {
	n := max(b.N, 200)
	ceiling := benchCeiling(b, n)
	b.ResetTimer()
	disk := benchEdgesink(b, n, "disk")
	b.StopTimer()
	memory := benchEdgesink(b, n, "memory")
	off := benchEdgesink(b, n, spool.ModeOff)

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(disk.perSecond(), "msgs/s")
	b.ReportMetric(ms(disk.percentile(0.50)), "p50-ms")
	b.ReportMetric(ms(disk.percentile(0.99)), "p99-ms")
	b.ReportMetric(100*disk.perSecond()/ceiling.perSecond(), "%-of-ceiling")
	b.ReportMetric(memory.perSecond(), "memory-msgs/s")
	b.ReportMetric(off.perSecond(), "nospool-msgs/s")
	b.ReportMetric(ceiling.perSecond(), "ceiling-msgs/s")
	if b.N == 1 {
		return // the framework's probe run; the real one follows
	}
	fmt.Fprintf(os.Stdout, "\n%d mails of %d KiB, %d concurrent senders; latency from end of DATA\n", n, benchMailSize>>10, benchSenders)
	row := func(name string, r loadResult, until string) {
		fmt.Fprintf(os.Stdout, "  %-40s %7.0f msgs/s  p50 %7.2f ms  p99 %7.2f ms  %3.0f%% of ceiling  (%s)\n",
			name, r.perSecond(), ms(r.percentile(0.5)), ms(r.percentile(0.99)), 100*r.perSecond()/ceiling.perSecond(), until)
	}
	row("edgesink, disk spool -> mosquitto", disk, "until the subscriber has it")
	row("edgesink, memory spool -> mosquitto", memory, "until the subscriber has it")
	row("edgesink, no spool -> mosquitto", off, "until the subscriber has it")
	row("bare go-smtp, discard (ceiling)", ceiling, "until 250")
	fmt.Fprintln(os.Stdout)
}
