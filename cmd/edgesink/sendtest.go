package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/edgesink/edgesink/sink/smtpd"
)

const sampleAlert = `From: "edgesink test" <{from}>
To: {to}
Subject: edgesink test alert
Date: {date}
Message-ID: <{date_id}@edgesink.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8

This is a test alert sent by 'edgesink send-test' at {date}.
If it reached your MQTT subscriber or serial device, the whole path works.
`

func runSendTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send-test", "edgesink send-test [flags] [FILE.eml]", stdout, stderr)
	server := fs.String("server", "127.0.0.1:2525", "edgesink SMTP `address` to send to")
	to := fs.String("to", "alerts@edgesink.lan", "envelope recipient `address`")
	from := fs.String("from", "", "envelope sender `address`; its local part becomes the device name (default: FILE's From: address, else "+defaultTestFrom+")")
	helo := fs.String("helo", "edgesink-send-test", "HELO `name` to announce")
	timeout := fs.Duration("timeout", time.Minute, "give up after this `duration`")
	if ok, code := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		return fs.usageError()
	}

	var msg []byte
	what := "sample alert"
	if fs.NArg() == 1 {
		var err error
		if msg, err = os.ReadFile(fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "edgesink send-test: %v\n", err)
			return exitUsage
		}
		what = fs.Arg(0)
		if *from == "" {
			// The alert names the device the mail came from, as it would
			// when the device sends it.
			*from = headerFrom(msg)
		}
	}
	if *from == "" {
		*from = defaultTestFrom
	}
	if fs.NArg() == 0 {
		now := time.Now()
		msg = []byte(strings.NewReplacer("{from}", *from, "{to}", *to,
			"{date}", now.Format(time.RFC1123Z), "{date_id}", fmt.Sprint(now.UnixNano())).Replace(sampleAlert))
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	if err := sendMail(ctx, *server, *helo, *from, []string{*to}, msg); err != nil {
		fmt.Fprintf(stderr, "edgesink send-test: %s to %s not accepted: %v\n", what, *server, err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s accepted by %s in %s\n", what, *server, time.Since(start).Round(time.Millisecond))
	return exitOK
}

const defaultTestFrom = "edgesink-test@edgesink.lan"

// headerFrom is the address in a mail's From: header, "" if it has none
// that parses.
func headerFrom(msg []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	addrs, err := m.Header.AddressList("From")
	if err != nil || len(addrs) == 0 {
		return ""
	}
	return addrs[0].Address
}

// sendMail delivers one message over plain SMTP and returns the server's
// refusal, if any, as the error.
func sendMail(ctx context.Context, addr, helo, from string, to []string, msg []byte) error {
	return smtpd.SendMail(ctx, nil, addr, helo, from, to, msg)
}
