// Package smtpd is the SMTP side of edgesink, and the only package that
// imports go-smtp: it accepts mail from devices on the LAN, reads it with the
// legacy line shim (bare LF, empty HELO), applies the policy (networks,
// senders, rates, AUTH, TLS), turns each message into one Alert
// (sink/extract) and hands it to a sink.Handler.
//
// It never relays mail, and it answers the device only after the Handler
// returned: 250 when the alert is safe, 4xx when it could not be taken (the
// device keeps the mail and retries), 5xx when retrying cannot help. Handler
// errors are translated into replies once, here (replyFor).
package smtpd
