package smtpd

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/smtp"
)

// SendMail runs one whole SMTP session as a device does: connect (with d,
// or a plain dialer when d is nil), EHLO helo, one mail from → to, QUIT. The
// context's deadline bounds the whole session. A refusal comes back as the
// error, its text starting with the reply code ("451 4.3.0 …"). It is what
// 'edgesink send-test' and the tests send with.
func SendMail(ctx context.Context, d *net.Dialer, addr, helo, from string, to []string, msg []byte) error {
	if d == nil {
		d = &net.Dialer{}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, bytes.NewReader(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
