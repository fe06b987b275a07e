package main

// make bench: CPU per mail, throughput and latency of the whole path (SMTP
// in, MQTT out to a real mosquitto, acknowledged) beside the ceiling, a
// bare go-smtp server that discards mail, under the same load in the same
// run.
//
// Each server runs in a process of its own (this test binary started again,
// see TestMain), so its CPU time (user + system, from getrusage in that
// process) is the server's alone: the senders and the subscriber run here.
//
// go-smtp is imported here only to build that ceiling; edgesink itself
// reaches go-smtp through the sink package alone.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/edgesink/edgesink/forward/mqtt"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

const (
	benchSenders  = 20
	benchMailSize = 4 << 10
	// benchServerEnv starts this test binary as a benchmark's server: "bare"
	// or a spool mode; benchBrokerEnv and benchDirEnv give its broker and
	// spool directory.
	benchServerEnv = "EDGESINK_BENCH_SERVER"
	benchBrokerEnv = "EDGESINK_BENCH_BROKER"
	benchDirEnv    = "EDGESINK_BENCH_DIR"
	// benchProfileEnv, when set by whoever runs make bench, is a path
	// prefix: each server process writes its CPU profile there.
	benchProfileEnv = "EDGESINK_BENCH_CPUPROFILE"
	// benchWrapEnv+MODE (BARE, DISK, MEMORY, OFF), when set, is a command
	// the server of that mode is run under, e.g. "strace -f -c -o FILE"
	// to count its system calls.
	benchWrapEnv = "EDGESINK_BENCH_WRAP_"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(benchServerEnv); mode != "" {
		os.Exit(benchServerProcess(mode))
	}
	os.Exit(m.Run())
}

// benchServerProcess is a benchmark's server process: it prints "addr
// HOST:PORT", then answers each "cpu" line on stdin with its CPU time so
// far ("cpu USER+SYS-µs MAXRSS-KiB"), and stops at the end of stdin.
func benchServerProcess(mode string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	var addr string
	if mode == "floor" {
		// Not edgesink: go-smtp beside the two costs no alert can skip,
		// the disk spool's flush and one QoS 1 publish, with an alert
		// that holds only an id and the subject's token (no parsing, no
		// classifying, no Home Assistant, no status page).
		pub, err := mqtt.New(mqtt.Config{Broker: os.Getenv(benchBrokerEnv), ClientID: "edgesink-floor"}, slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		sp, err := spool.Open(spool.Config{Dir: os.Getenv(benchDirEnv)}, slog.New(slog.DiscardHandler), pub)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for !pub.Connected() {
			time.Sleep(10 * time.Millisecond)
		}
		if addr, err = serveGoSMTP(ctx, floorBackend{sp}, served, func() { sp.Close(); pub.Close() }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	} else if mode == "bare" {
		var err error
		if addr, err = serveGoSMTP(ctx, discardBackend{}, served, func() {}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	} else {
		cfg := DefaultConfig()
		cfg.SMTP.Listen = Addrs{"127.0.0.1:0"}
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.MQTT.Broker = os.Getenv(benchBrokerEnv)
		cfg.MQTT.ClientID = "edgesink-bench"
		cfg.Spool.Mode = mode
		cfg.Spool.Dir = os.Getenv(benchDirEnv)
		// Every mail is published on its own: folding a storm of camera
		// mails into one alert would measure less work than arrived.
		cfg.Coalesce.Disabled = true
		cfg.SMTP.Policy.MaxConnectionsPerIP, cfg.SMTP.Policy.MailsPerMinute = 100, 1_000_000 // the load comes from one address
		ready := make(chan readyInfo, 1)
		// Its log as in service (text, a line per accepted alert), written
		// where it costs a write but nothing else.
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer devNull.Close()
		log := slog.New(slog.NewTextHandler(devNull, nil))
		go func() { served <- serve(ctx, cfg, log, func(r readyInfo) { ready <- r }) }()
		select {
		case r := <-ready:
			addr = r.SMTPAddr
		case err := <-served:
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if path := os.Getenv(benchProfileEnv); path != "" {
		// One profile per server process: mode and pid in the name; and
		// what it allocated, in PATH.allocs.MODE.PID.
		f, err := os.Create(fmt.Sprintf("%s.%s.%d", path, mode, os.Getpid()))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
		defer func() {
			if f, err := os.Create(fmt.Sprintf("%s.allocs.%s.%d", path, mode, os.Getpid())); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	fmt.Printf("addr %s\n", addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Printf("cpu %d %d\n", cpu.Microseconds(), peakRSS())
	}
	cancel()
	<-served
	return 0
}

// serveGoSMTP serves backend with a plain go-smtp server on a free port
// until ctx ends, then closes it and calls stopped.
func serveGoSMTP(ctx context.Context, backend gosmtp.Backend, served chan<- error, stopped func()) (string, error) {
	srv := gosmtp.NewServer(backend)
	srv.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { served <- srv.Serve(l) }()
	go func() { <-ctx.Done(); srv.Close(); stopped() }()
	return l.Addr().String(), nil
}

// peakRSS is this process's VmHWM in KiB (getrusage's maxrss would carry
// the parent's over the exec).
func peakRSS() int64 {
	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// benchServer is a running server process.
type benchServer struct {
	addr string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
}

func startBenchServer(b *testing.B, mode, broker string) *benchServer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if w := strings.Fields(os.Getenv(benchWrapEnv + strings.ToUpper(mode))); len(w) > 0 {
		cmd = exec.Command(w[0], append(w[1:], os.Args[0], "-test.run=^$")...)
	}
	cmd.Env = append(os.Environ(), benchServerEnv+"="+mode, benchBrokerEnv+"="+broker, benchDirEnv+"="+b.TempDir())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &benchServer{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	b.Cleanup(s.stop)
	line, err := s.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "addr ") {
		b.Fatalf("%s server did not start: %q %v", mode, line, err)
	}
	s.addr = strings.TrimSpace(strings.TrimPrefix(line, "addr "))
	return s
}

// cpu returns the server's CPU time so far and its peak RSS in KiB.
func (s *benchServer) cpu(b *testing.B) (time.Duration, int64) {
	b.Helper()
	if _, err := io.WriteString(s.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	line, err := s.out.ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "cpu" {
		b.Fatalf("server's CPU time: %q %v", line, err)
	}
	us, _ := strconv.ParseInt(f[1], 10, 64)
	rss, _ := strconv.ParseInt(f[2], 10, 64)
	return time.Duration(us) * time.Microsecond, rss
}

func (s *benchServer) stop() {
	if s.in != nil {
		s.in.Close()
		s.in = nil
		_ = s.cmd.Wait()
	}
}

// loadResult is what one load run measured.
type loadResult struct {
	n         int
	elapsed   time.Duration
	cpu       time.Duration // the server's
	peakRSS   int64         // KiB, the server's
	latencies []time.Duration
}

func (r loadResult) perSecond() float64 { return float64(r.n) / r.elapsed.Seconds() }

// cpuPerMail is the server's CPU time per mail in µs.
func (r loadResult) cpuPerMail() float64 { return float64(r.cpu.Microseconds()) / float64(r.n) }

func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

type mailFunc func(i int) (token string, msg []byte)

// runLoad sends n mails over benchSenders connections.
func runLoad(b *testing.B, addr string, n int, mail mailFunc, endOfData func(token string), done func(token string)) time.Duration {
	b.Helper()
	elapsed, err := smtptest.Load{Addr: addr, Senders: benchSenders, N: n,
		Mail: mail, EndOfData: endOfData, Accepted: done}.Run()
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

// floorBackend stores and publishes each mail as an alert of its subject.
type floorBackend struct{ sp *spool.Spool }

func (f floorBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return floorSession(f), nil }

type floorSession struct{ sp *spool.Spool }

func (floorSession) Reset()                                 {}
func (floorSession) Logout() error                          { return nil }
func (floorSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (floorSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (floorSession) AuthMechanisms() []string               { return nil }
func (f floorSession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, rest, _ := bytes.Cut(msg, []byte("Subject: "))
	subject, _, _ := bytes.Cut(rest, []byte("\r\n"))
	now := time.Now()
	return f.sp.Handle(context.Background(), &sink.Alert{ID: sink.NewID(now), ReceivedAt: now, Device: "load", Subject: string(subject)})
}

func benchCeiling(b *testing.B, n int, mail mailFunc) loadResult {
	srv := startBenchServer(b, "bare", "")
	defer srv.stop()
	var mu sync.Mutex
	started := make(map[string]time.Time, n)
	res := loadResult{n: n, latencies: make([]time.Duration, 0, n)}
	cpu0, _ := srv.cpu(b)
	res.elapsed = runLoad(b, srv.addr, n, mail,
		func(tok string) { mu.Lock(); started[tok] = time.Now(); mu.Unlock() },
		func(tok string) {
			mu.Lock()
			res.latencies = append(res.latencies, time.Since(started[tok]))
			mu.Unlock()
		})
	cpu1, rss := srv.cpu(b)
	res.cpu, res.peakRSS = cpu1-cpu0, rss
	return res
}

func benchEdgesink(b *testing.B, n int, mail mailFunc, spoolMode string) loadResult {
	broker := mqtttest.StartMosquitto(b)
	sub := mqtttest.Subscribe(b, broker.Addr(), "edgesink/+/alert")
	srv := startBenchServer(b, spoolMode, broker.URL())
	defer srv.stop()

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
	cpu0, _ := srv.cpu(b)
	start := time.Now()
	runLoad(b, srv.addr, n, mail,
		func(tok string) { mu.Lock(); started[tok] = time.Now(); mu.Unlock() },
		func(string) {})
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		b.Fatalf("only %d of %d alerts reached the subscriber", len(arrived), n)
	}
	// Throughput (and CPU) is counted until the last alert reached the
	// subscriber, so a spool that answers fast but delivers slowly gains
	// nothing.
	res.elapsed = time.Since(start)
	cpu1, rss := srv.cpu(b)
	res.cpu, res.peakRSS = cpu1-cpu0, rss
	mu.Lock()
	defer mu.Unlock()
	for tok, t0 := range started {
		res.latencies = append(res.latencies, arrived[tok].Sub(t0))
	}
	return res
}

// benchAll runs the load against the ceiling and edgesink in each spool
// mode, reports the metrics and prints the table.
func benchAll(b *testing.B, what string, n int, mail mailFunc) {
	ceiling := benchCeiling(b, n, mail)
	b.ResetTimer()
	disk := benchEdgesink(b, n, mail, spool.ModeDisk)
	b.StopTimer()
	memory := benchEdgesink(b, n, mail, spool.ModeMemory)
	off := benchEdgesink(b, n, mail, spool.ModeOff)
	floor := benchEdgesink(b, n, mail, "floor")

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(disk.perSecond(), "msgs/s")
	b.ReportMetric(ms(disk.percentile(0.50)), "p50-ms")
	b.ReportMetric(ms(disk.percentile(0.99)), "p99-ms")
	b.ReportMetric(100*disk.perSecond()/ceiling.perSecond(), "%-of-ceiling")
	b.ReportMetric(disk.cpuPerMail(), "cpu-µs/mail")
	b.ReportMetric(disk.cpuPerMail()/ceiling.cpuPerMail(), "cpu-x-ceiling")
	b.ReportMetric(memory.cpuPerMail(), "memory-cpu-µs/mail")
	b.ReportMetric(ceiling.cpuPerMail(), "ceiling-cpu-µs/mail")
	b.ReportMetric(memory.perSecond(), "memory-msgs/s")
	b.ReportMetric(off.perSecond(), "nospool-msgs/s")
	b.ReportMetric(ceiling.perSecond(), "ceiling-msgs/s")
	if b.N == 1 {
		return // the framework's probe run; the real one follows
	}
	fmt.Fprintf(os.Stdout, "\n%d %s, %d concurrent senders; server CPU (user+sys) per mail; latency from end of DATA\n", n, what, benchSenders)
	row := func(name string, r loadResult, until string) {
		fmt.Fprintf(os.Stdout, "  %-36s %8.0f µs/mail %4.1fx  %6.0f msgs/s %3.0f%%  p50 %7.2f ms  p99 %7.2f ms  peak RSS %3d MB  (%s)\n",
			name, r.cpuPerMail(), r.cpuPerMail()/ceiling.cpuPerMail(), r.perSecond(), 100*r.perSecond()/ceiling.perSecond(),
			ms(r.percentile(0.5)), ms(r.percentile(0.99)), r.peakRSS>>10, until)
	}
	row("edgesink, disk spool -> mosquitto", disk, "until the subscriber has it")
	row("edgesink, memory spool -> mosquitto", memory, "until the subscriber has it")
	row("edgesink, no spool -> mosquitto", off, "until the subscriber has it")
	row("floor: go-smtp + disk spool + publish", floor, "until the subscriber has it")
	row("bare go-smtp, discard (ceiling)", ceiling, "until 250")
	fmt.Fprintln(os.Stdout)
}

// BenchmarkEndToEnd reports, for 20 concurrent senders of 4 KiB mails:
// edgesink's CPU time per mail, messages per second and p50/p99 latency
// from the end of DATA to the alert reaching an MQTT subscriber through
// mosquitto, with the disk spool, the memory spool and no spool; the same
// for the bare go-smtp ceiling (end of DATA to 250); and each one's share
// or multiple of the ceiling.
func BenchmarkEndToEnd(b *testing.B) {
	benchAll(b, fmt.Sprintf("mails of %d KiB", benchMailSize>>10), max(b.N, 200),
		func(i int) (string, []byte) { return smtptest.AlertMail(i, benchMailSize) })
}

// BenchmarkCameraMail is BenchmarkEndToEnd with a camera's mail of about
// 617 KB (three 150 KB JPEG snapshots in base64), a tenth as many.
func BenchmarkCameraMail(b *testing.B) {
	_, m := smtptest.CameraMail(0)
	benchAll(b, fmt.Sprintf("camera mails of %d KB (3 JPEG snapshots)", len(m)/1000), max(b.N/10, 40), smtptest.CameraMail)
}
