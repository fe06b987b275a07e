package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/edgesink/edgesink/forward/spool"
)

const spoolUsage = `edgesink spool - look at and act on alerts waiting in the spool

Usage:
  edgesink spool [flags] list         queued alerts and dead letters, oldest first
  edgesink spool [flags] show ID      what the spool holds for one alert
  edgesink spool [flags] retry ID     put a dead letter back in the queue
                                      (taken up at the next start, or now with
                                      systemctl reload edgesink / kill -HUP)
  edgesink spool [flags] drop ID      delete an alert from the spool for good

Flags:
`

func runSpool(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("spool", spoolUsage, stderr)
	configPath := fs.String("config", "", "config `file` whose spool.dir to use")
	dirFlag := fs.String("spool-dir", "", "spool `directory` (default: spool.dir, else the state directory)")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := configFrom(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink: %v\n", err)
		return exitUsage
	}
	if *dirFlag != "" {
		cfg.Spool.Dir = *dirFlag
	}
	cfg.Spool.Mode = spool.ModeDisk
	scfg, err := cfg.Spool.spoolConfig()
	if err != nil {
		fmt.Fprintf(stderr, "edgesink spool: %v\n", err)
		return exitUsage
	}
	dir := scfg.Dir

	verb, rest := fs.Arg(0), fs.Args()
	if len(rest) > 0 {
		rest = rest[1:]
	}
	needID := verb == "show" || verb == "retry" || verb == "drop"
	if verb == "" || (needID && len(rest) != 1) || (!needID && len(rest) != 0) {
		fs.Usage()
		return exitUsage
	}
	switch verb {
	case "list":
		items, err := spool.List(dir)
		if err != nil {
			return spoolFailed(stderr, err)
		}
		if len(items) == 0 {
			fmt.Fprintf(stdout, "spool %s is empty\n", dir)
			return exitOK
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tSTATE\tRECEIVED\tDEVICE\tSUBJECT\tOUTPUT\tREASON")
		for _, it := range items {
			received := ""
			if !it.ReceivedAt.IsZero() {
				received = it.ReceivedAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.ID, it.State, received, it.Device, it.Subject, it.Output, it.Reason)
		}
		w.Flush()
	case "show":
		items, err := spool.Show(dir, rest[0])
		if err != nil {
			return spoolFailed(stderr, err)
		}
		for _, it := range items {
			fmt.Fprintf(stdout, "%s: %s\n", it.State, it.Path)
			if it.Reason != "" {
				fmt.Fprintf(stdout, "  output %s gave up: %s\n", it.Output, it.Reason)
			}
			if it.Device != "" {
				fmt.Fprintf(stdout, "  device %s, received %s, subject %q\n", it.Device, it.ReceivedAt.Format(time.RFC3339), it.Subject)
			}
		}
	case "retry":
		if err := spool.Retry(dir, rest[0]); err != nil {
			return spoolFailed(stderr, err)
		}
		fmt.Fprintf(stdout, "%s queued again; a running edgesink takes it up on SIGHUP (systemctl reload edgesink) or at its next start\n", rest[0])
	case "drop":
		if err := spool.Drop(dir, rest[0]); err != nil {
			return spoolFailed(stderr, err)
		}
		fmt.Fprintf(stdout, "%s dropped\n", rest[0])
	default:
		fmt.Fprintf(stderr, "edgesink spool: unknown action %q\n\n", verb)
		fs.Usage()
		return exitUsage
	}
	return exitOK
}

func spoolFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "edgesink spool: %v\n", err)
	if errors.Is(err, spool.ErrNotFound) {
		return exitUsage
	}
	return exitRuntime
}
