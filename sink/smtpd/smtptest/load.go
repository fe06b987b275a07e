// Package smtptest is the SMTP side's test kit: a load generator of
// concurrent senders, a burst of numbered alerts that tells which got 250,
// one SMTP transaction or session as a device does it, and a log writer
// that sends a server's lines to the test's log.
package smtptest

import (
	"fmt"
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
