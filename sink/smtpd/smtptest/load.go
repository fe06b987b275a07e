// Package smtptest is the SMTP side's test kit: a load generator of
// concurrent senders, a burst of numbered alerts that tells which got 250,
// one SMTP transaction or session as a device does it, and a log writer
// that sends a server's lines to the test's log.
package smtptest

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load is a benchmark's SMTP load: Senders connections, each sending mails
// one after another (MAIL, RCPT, DATA, wait for 250) until N are sent.
type Load struct {
	Addr    string
	Senders int
	N       int
	// Mail returns mail i (1-based) and the token it carries.
	Mail func(i int) (token string, msg []byte)
	// EndOfData, when set, is called just before the final dot of a mail;
	// Accepted after its 250.
	EndOfData, Accepted func(token string)
}

// Run sends the load and returns how long it took. The first error ends
// its sender and is returned.
func (l Load) Run() (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, l.Senders)
	start := time.Now()
	for range l.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.sender(&next); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return elapsed, <-errs
}

func (l Load) sender(next *atomic.Int64) error {
	c, err := smtp.Dial(l.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("load"); err != nil {
		return err
	}
	for {
		i := next.Add(1)
		if i > int64(l.N) {
			return c.Quit()
		}
		token, msg := l.Mail(int(i))
		err := Send(c, "load@cams.lan", "alerts@edgesink.lan", msg, func() {
			if l.EndOfData != nil {
				l.EndOfData(token)
			}
		})
		if err != nil {
			return fmt.Errorf("%s: %w", token, err)
		}
		if l.Accepted != nil {
			l.Accepted(token)
		}
	}
}

// AlertMail is a plain alert mail of about size bytes whose subject is the
// token "load-i".
func AlertMail(i, size int) (token string, msg []byte) {
	token = fmt.Sprintf("load-%d", i)
	var b strings.Builder
	fmt.Fprintf(&b, "From: load@cams.lan\r\nTo: alerts@edgesink.lan\r\nSubject: %s\r\n\r\n", token)
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return token, []byte(b.String())
}

// Send runs one mail transaction on c: MAIL, RCPT, DATA with msg. beforeDot,
// when set, is called once msg is written, before the final dot.
func Send(c *smtp.Client, from, to string, msg []byte, beforeDot func()) error {
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if beforeDot != nil {
		beforeDot()
	}
	return w.Close()
}

// CameraMail is a camera's alert mail of about 617 KB: a short text part
// and three 150 KB JPEG snapshots in base64, whose subject is the token
// "load-i". The snapshots are the same in every mail (made once).
func CameraMail(i int) (token string, msg []byte) {
	token = fmt.Sprintf("load-%d", i)
	cameraOnce.Do(makeCameraBody)
	head := fmt.Sprintf("From: cam@cams.lan\r\nTo: alerts@edgesink.lan\r\nSubject: %s\r\n", token)
	return token, append([]byte(head), cameraBody...)
}

var (
	cameraOnce sync.Once
	cameraBody []byte
)

func makeCameraBody() {
	const boundary = "----=_camera_snapshot_boundary"
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n")
	b.WriteString("--" + boundary + "\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString("Motion detected on channel 1 (Front door) at 2026-11-23 23:59:59.\r\n\r\n")
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 3; n++ {
		jpeg := make([]byte, 150<<10)
		for i := range jpeg {
			jpeg[i] = byte(rng.Uint32())
		}
		copy(jpeg, []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0})
		jpeg[len(jpeg)-2], jpeg[len(jpeg)-1] = 0xFF, 0xD9
		fmt.Fprintf(&b, "--%s\r\nContent-Type: image/jpeg; name=\"snap%d.jpg\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"snap%d.jpg\"\r\n\r\n", boundary, n, n)
		enc := base64.StdEncoding.EncodeToString(jpeg)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	cameraBody = []byte(b.String())
}
