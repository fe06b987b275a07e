package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/edgesink/edgesink/sink/classify"
	"github.com/edgesink/edgesink/sink/extract"
)

const classifyUsage = `Usage: edgesink classify [flags] FILE.eml
       edgesink classify --templates

Prints the alert JSON edgesink would make of the mail in FILE: what
extraction reads, the device the devices map names, and the event the
templates decide (user templates from the config first). Use it to write
a template against a real mail. The envelope is as the flags say; by
default the sender is the mail's From: address.

Flags:
`

func runClassify(args []string, stdout, stderr io.Writer, h host) int {
	fs := newFlagSet("classify", classifyUsage, stdout, stderr)
	configPath := fs.String("config", "", "config `file` whose devices and templates to use (default: the installed one, else none)")
	from := fs.String("from", "", "envelope sender `address` (default: the From: address)")
	to := fs.String("to", "alerts@edgesink.lan", "envelope recipient `address`")
	remote := fs.String("remote-addr", "192.0.2.1:40000", "the client's `address`, for the devices map's ip")
	helo := fs.String("helo", "", "HELO `name` the device would announce")
	authUser := fs.String("auth-user", "", "AUTH `user` the device would log in as")
	list := fs.Bool("templates", false, "list the built-in templates, in the order they are tried")
	if ok, code := fs.parse(args); !ok {
		return code
	}
	if *list {
		if fs.NArg() != 0 {
			return fs.usageError()
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TEMPLATE\tVENDOR")
		for _, t := range classify.BuiltinTemplates() {
			fmt.Fprintf(tw, "%s\t%s\n", t.Name, t.Vendor)
		}
		_ = tw.Flush()
		return exitOK
	}
	if fs.NArg() != 1 {
		return fs.usageError()
	}
	cfg, _, err := h.cliConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink: %v\n", err)
		return exitUsage
	}
	c, err := classify.Load(cfg.Classify)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink: %v\n", err)
		return exitUsage
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "edgesink classify: %v\n", err)
		return exitUsage
	}
	if *from == "" {
		*from = headerFrom(raw)
	}
	a, err := extract.Extract(raw, extract.Envelope{ReceivedAt: time.Now(), RemoteAddr: *remote, Helo: *helo,
		MailFrom: *from, RcptTo: []string{*to}, AuthUser: *authUser})
	if err != nil && !errors.Is(err, extract.ErrNoContent) {
		fmt.Fprintf(stderr, "edgesink classify: %v\n", err)
		return exitRuntime
	}
	c.Apply(a)
	out, _ := json.MarshalIndent(a, "", "  ")
	fmt.Fprintf(stdout, "%s\n", out)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink classify: %s: edgesink would refuse this mail (554): %v\n", fs.Arg(0), err)
		return exitRuntime
	}
	return exitOK
}
