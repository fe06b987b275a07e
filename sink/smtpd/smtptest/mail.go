package smtptest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgesink/edgesink/sink/smtpd"
)

// SendMail is smtpd.SendMail with one recipient: one whole session as a
// device runs it.
func SendMail(ctx context.Context, d *net.Dialer, addr, helo, from, to string, msg []byte) error {
	return smtpd.SendMail(ctx, d, addr, helo, from, []string{to}, msg)
}

// SubjectMail is a small alert mail from a camera whose subject is subject,
// so that what reaches MQTT can be matched to what was sent.
func SubjectMail(subject string) []byte {
	return []byte("From: cam@cams.lan\r\nTo: alerts@edgesink.lan\r\nSubject: " + subject + "\r\n\r\nalert body\r\n")
}

// Progress counts, while SendMany runs, the mails begun, those ended
// (answered or failed) and those that got 250.
type Progress struct {
	Started, Ended, Acked atomic.Int64
}

// SendMany sends n SubjectMails with the subjects prefix-0 … over conc
// connections at once, each mail in a session of its own to the address
// addr returns at that moment, and returns the subjects that got 250 and
// those that did not, with the errors of the latter. p, when not nil, is
// kept up to date while it runs.
func SendMany(addr func() string, prefix string, n, conc int, p *Progress) (acked, refused []string, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range next {
				subject := fmt.Sprintf("%s-%d", prefix, i)
				from := fmt.Sprintf("cam%d@cams.lan", g%5)
				if p != nil {
					p.Started.Add(1)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := SendMail(ctx, nil, addr(), "loadgen", from, "alerts@edgesink.lan", SubjectMail(subject))
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, subject)
				} else {
					refused = append(refused, subject)
					errs = append(errs, err)
				}
				mu.Unlock()
				if p != nil {
					if err == nil {
						p.Acked.Add(1)
					}
					p.Ended.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	return acked, refused, errs
}
