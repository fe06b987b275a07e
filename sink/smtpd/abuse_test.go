package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink/smtpd"
)

// TestCraftedMessages: a 10,000-line header and 5,000 MIME parts are
// refused with 552 5.3.4 before parsing; the session stays usable.
func TestCraftedMessages(t *testing.T) {
	var hugeHeader strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&hugeHeader, "X-Junk-%d: aaaaaaaaaaaaaaaa\r\n", i)
	}
	hugeHeader.WriteString("Subject: big header\r\n\r\nbody\r\n")

	var manyParts strings.Builder
	manyParts.WriteString("Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n")
	for range 5000 {
		manyParts.WriteString("--XX\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	manyParts.WriteString("--XX--\r\n")

	var fewParts strings.Builder
	fewParts.WriteString("Subject: snapshots\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; BOUNDARY=b1\r\n\r\n")
	for range 16 {
		fewParts.WriteString("--b1\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n")
	}
	fewParts.WriteString("--b1--\r\n")

	rec := &recorder{}
	_, addr := startServer(t, smtpd.Config{}, rec)
	c := dial(t, addr)
	c.cmd("EHLO cam", 250)
	for _, tc := range []struct {
		name, body, want string
		code             int
	}{
		{"10,000-line header", hugeHeader.String(), "5.3.4 Message header too large", 552},
		{"5,000 MIME parts", manyParts.String(), "5.3.4 Message has too many MIME parts", 552},
		{"16 snapshots", fewParts.String(), "", 250},
	} {
		code, text := c.mail("cam@cams.lan", tc.body)
		if code != tc.code || !strings.Contains(text, strings.TrimPrefix(tc.want, "")) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, text, tc.code, tc.want)
		}
	}
	if got := rec.got(); len(got) != 1 || len(got[0].Attachments) != 16 {
		t.Errorf("alerts: %d", len(got))
	}
}

// TestErrorCap: a client that keeps getting errors is cut off with 421
// after smtp.max_errors of them.
func TestErrorCap(t *testing.T) {
	_, addr := startServer(t, smtpd.Config{MaxErrors: 5}, &recorder{})
	c := dial(t, addr)
	c.cmd("EHLO scanner", 250)
	for i := range 4 {
		c.cmd(fmt.Sprintf("FROB %d", i), 500)
	}
	c.send("XYZZY\r\n")
	c.expect(500)
	if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.7.0 Too many errors") {
		t.Errorf("after the 5th error: %d %q, want 421 4.7.0", code, text)
	}
	if !c.closed() {
		t.Error("connection still open")
	}
}

// TestSlowAndEndlessClients: a client sending one byte a second is timed
// out (421 4.4.2) and one sending an endless line is cut off (500 5.4.0),
// while a normal client is served meanwhile.
func TestSlowAndEndlessClients(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, smtpd.Config{ReadTimeout: 2 * time.Second}, rec)

	slow := dial(t, addr)
	slowDone := make(chan string, 1)
	go func() {
		for _, b := range []byte("EHLO slowloris.example\r\n") {
			if _, err := slow.conn.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(time.Second)
		}
	}()
	go func() {
		line, _ := slow.r.ReadString('\n')
		slowDone <- line
	}()

	endless := dial(t, addr)
	endless.cmd("EHLO endless", 250)
	chunk := []byte(strings.Repeat("A", 4096))
	endlessDone := make(chan string, 1)
	go func() {
		line, _ := endless.r.ReadString('\n')
		endlessDone <- line
	}()
	go func() {
		for range 64 {
			if _, err := endless.conn.Write(chunk); err != nil {
				return
			}
		}
	}()

	normal := dial(t, addr)
	normal.cmd("EHLO cam", 250)
	if code, text := normal.mail("cam@cams.lan", simpleMail); code != 250 {
		t.Errorf("normal client beside the slow ones: %d %s", code, text)
	}
	if line := <-endlessDone; !strings.HasPrefix(line, "500 5.4.0") {
		t.Errorf("endless line: %q, want 500 5.4.0", line)
	}
	select {
	case line := <-slowDone:
		if !strings.HasPrefix(line, "421 4.4.2") {
			t.Errorf("one byte a second: %q, want 421 4.4.2", line)
		}
	case <-time.After(15 * time.Second):
		t.Error("slow client not timed out after 15s")
	}
}
