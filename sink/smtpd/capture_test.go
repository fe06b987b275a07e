package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// rawRecorder keeps the raw mail of every alert handed to it.
type rawRecorder struct {
	mu   sync.Mutex
	raws [][]byte
}

func (r *rawRecorder) Handle(ctx context.Context, _ *sink.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raws = append(r.raws, bytes.Clone(sink.RawMail(ctx)))
	return nil
}

func (r *rawRecorder) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	raws := r.raws
	r.raws = nil
	return raws
}

// captureLimits are small, so that the size and line limits are reached,
// and allow all the mails a fuzzer sends from one address.
var captureLimits = smtpd.Config{MaxLineLength: 1000, MaxMessageBytes: 8000, MaxErrors: 1 << 20,
	Policy: smtpd.Policy{MailsPerMinute: 1 << 30}}

// startComparedServer starts a server whose line shim captures DATA
// (goSMTPReads false) or one where go-smtp reads DATA itself.
func startComparedServer(tb testing.TB, goSMTPReads bool) (*rawRecorder, string) {
	tb.Helper()
	rec := &rawRecorder{}
	s, err := smtpd.New(captureLimits, rec, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	if goSMTPReads {
		s.ReadDataInGoSMTP()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	tb.Cleanup(func() { _ = s.Close(); <-done })
	return rec, l.Addr().String()
}

// transcript runs one session: the envelope, DATA, and after the 354 the
// client's data as it is, then NOOP and QUIT; it returns every reply the
// server wrote, and whether the session ended in a reset (a server that
// hangs up on unread data may lose the client its last replies).
func transcript(tb testing.TB, addr string, data []byte) (string, bool) {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var mu sync.Mutex
	var got bytes.Buffer
	saw354 := make(chan struct{})
	done := make(chan error, 1)
	go func() { // reads all along, so that little is left to a reset
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			if saw354 != nil && strings.Contains(got.String(), "\r\n354 ") {
				close(saw354)
				saw354 = nil
			}
			mu.Unlock()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	wait := saw354
	if _, err := io.WriteString(conn, "EHLO x\r\nMAIL FROM:<a@b.lan>\r\nRCPT TO:<c@d.lan>\r\nDATA\r\n"); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-wait:
	case err := <-done:
		tb.Fatalf("no 354: %q (%v)", got.String(), err)
	}
	// In pieces of uneven size, so runs are cut anywhere.
	for len(data) > 0 {
		k := min(len(data), 1+len(data)%997)
		if _, err := conn.Write(data[:k]); err != nil {
			break // the server hung up (a line too long)
		}
		data = data[k:]
	}
	_, _ = io.WriteString(conn, "NOOP\r\nQUIT\r\n")
	err = <-done
	mu.Lock()
	defer mu.Unlock()
	return got.String(), !errors.Is(err, io.EOF)
}

// compareCapture sends data in a session to both servers: the replies and
// the raw mail must be the same.
func compareCapture(tb testing.TB, data []byte, capture, gosmtp *rawRecorder, captureAddr, gosmtpAddr string) {
	tb.Helper()
	want, wantReset := transcript(tb, gosmtpAddr, data)
	got, gotReset := transcript(tb, captureAddr, data)
	same := got == want
	if !same && (gotReset || wantReset) { // the replies up to the reset
		same = strings.HasPrefix(got, want) || strings.HasPrefix(want, got)
	}
	if !same {
		tb.Fatalf("data %q\ncaptured: replies\n%s\ngo-smtp's reader: replies\n%s", data, got, want)
	}
	gotRaw, wantRaw := capture.take(), gosmtp.take()
	if len(gotRaw) != len(wantRaw) {
		tb.Fatalf("data %q: %d mails captured, %d through go-smtp's reader", data, len(gotRaw), len(wantRaw))
	}
	for i := range gotRaw {
		if !bytes.Equal(gotRaw[i], wantRaw[i]) {
			tb.Fatalf("data %q: raw mail captured\n%q\ngo-smtp's reader\n%q", data, gotRaw[i], wantRaw[i])
		}
	}
}

func exactly(n int) string {
	head := "Subject: size\r\n\r\n"
	line := strings.Repeat("y", 78) + "\r\n"
	var b strings.Builder
	b.WriteString(head)
	for b.Len()+len(line) <= n-2 {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("z", n-2-b.Len()) + "\r\n")
	return b.String()
}

// TestCaptureMatchesGoSMTP: the line shim's DATA capture gives the same
// replies and the same raw mail as go-smtp's own DATA reader, on ordinary
// mail, dot-stuffing, bare LF, odd CRs, over-long lines and at the size
// limit.
func TestCaptureMatchesGoSMTP(t *testing.T) {
	capture, captureAddr := startComparedServer(t, false)
	gosmtp, gosmtpAddr := startComparedServer(t, true)
	var many strings.Builder
	many.WriteString("Subject: many lines\r\n\r\n")
	for i := 0; many.Len() < 7000; i++ {
		many.WriteString(strings.Repeat("QUJD", i%19) + "\r\n")
		if i%7 == 0 {
			many.WriteString(".dot\r\n")
		}
	}
	for _, tt := range []struct{ name, data string }{
		{"plain", "Subject: a\r\n\r\nhello\r\n.\r\n"},
		{"dot stuffing", "Subject: b\r\n\r\n..leading\r\n.\rX\r\n..\r\n.x\r\n.\r\n"},
		{"bare LF", "Subject: c\n\nline one\nline two\n.\n"},
		{"CR CR LF then a dot line", "Subject: d\r\n\r\nx\r\r\n.\r\nmore\r\n.\r\n"},
		{"bare CR", "Subject: e\r\n\r\na\rb\r.\r\n.\r\n"},
		{"empty", ".\r\n"},
		{"empty line then end", "\r\n.\r\n"},
		{"many lines", many.String() + ".\r\n"},
		{"line at the limit", "Subject: f\r\n\r\n" + strings.Repeat("w", 998) + "\r\n.\r\n"},
		// go-smtp counts the LF before a line as one of its bytes.
		{"first line over the limit", strings.Repeat("w", 999) + "\r\n.\r\n"},
		{"first line at the limit", strings.Repeat("w", 998) + "\r\n.\r\n"},
		{"line too long", "Subject: g\r\n\r\n" + strings.Repeat("w", 1500) + "\r\n.\r\n"},
		{"one byte under the size limit", exactly(7999) + ".\r\n"},
		{"at the size limit", exactly(8000) + ".\r\n"},
		{"over the size limit", exactly(12000) + ".\r\n"},
		{"next mail pipelined", "Subject: h\r\n\r\nfirst\r\n.\r\nMAIL FROM:<a@b.lan>\r\nRCPT TO:<c@d.lan>\r\nDATA\r\nSubject: i\r\n\r\nsecond\r\n.\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			compareCapture(t, []byte(tt.data), capture, gosmtp, captureAddr, gosmtpAddr)
		})
	}
}

// FuzzCapture: any data, followed by lines that end it whatever came
// before (go-smtp takes "\r\r\n." for no line start), gives the same
// replies and raw mail captured as through go-smtp's own reader.
func FuzzCapture(f *testing.F) {
	for _, seed := range []string{"Subject: a\r\n\r\nhi\r\n", "..x\r\n.\rY\n.\n", "\r\r\n.\r\n", "a\nb\r\n.", strings.Repeat("v", 1200)} {
		f.Add([]byte(seed))
	}
	capture, captureAddr := startComparedServer(f, false)
	gosmtp, gosmtpAddr := startComparedServer(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		data = append(bytes.Clone(data), "\r\n\r\n.\r\n"...)
		compareCapture(t, data, capture, gosmtp, captureAddr, gosmtpAddr)
	})
}
