package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/classify"
)

const spoolUsage = `edgesink spool - look at and act on alerts waiting in the spool

Usage:
  edgesink spool list [flags]         queued alerts and dead letters, oldest first
  edgesink spool show [flags] ID      what the spool holds for one alert
  edgesink spool retry [flags] ID     put a dead letter (or a held file) back in the
                                      queue and tell the running edgesink (SIGHUP)
  edgesink spool drop [flags] ID      delete an alert from the spool for good
  edgesink spool replay [flags] ID    run a dead letter's raw mail (dead/ID.eml) through
                                      extraction and the device templates again, as a new
                                      alert with replay_of: ID, and tell the running edgesink

The spool is the one the service uses: --spool-dir, else spool.dir of
--config (default /etc/edgesink/edgesink.yaml when installed), else the
state directory (/var/lib/edgesink when installed). Files are written as
the spool's owner, also under sudo; the service's lock is never taken.

Flags:
`

func runSpool(args []string, stdout, stderr io.Writer, h host) int {
	fs := newFlagSet("spool", spoolUsage, stdout, stderr)
	configPath := fs.String("config", "", "config `file` whose spool.dir to use (default: the installed one, if any)")
	dirFlag := fs.String("spool-dir", "", "spool `directory` (default: spool.dir, else the state directory)")
	if ok, code := fs.parse(args); !ok {
		return code
	}
	verb, rest := fs.Arg(0), fs.Args()
	if len(rest) > 0 {
		rest = rest[1:]
	}
	needID := verb == "show" || verb == "retry" || verb == "drop" || verb == "replay"
	if verb == "" || (needID && len(rest) != 1) || (!needID && len(rest) != 0) {
		return fs.usageError()
	}
	dir := *dirFlag
	// replay classifies again: with the config's devices map and templates
	// when a config names the spool, else with the built-in templates.
	templates := classify.DefaultConfig()
	if dir == "" {
		cfg, file, err := h.cliConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "edgesink spool: %v (or name the spool with --spool-dir)\n", err)
			return exitUsage
		}
		templates = cfg.Classify
		if cfg.Spool.Mode == spool.ModeMemory && verb == "list" {
			return listRunning(cfg, h, stdout, stderr)
		}
		if cfg.Spool.Mode != spool.ModeDisk {
			fmt.Fprintf(stderr, "edgesink spool: %s has spool.mode %s: nothing is kept on disk", orDefaults(file), cfg.Spool.Mode)
			if cfg.Spool.Mode == spool.ModeMemory {
				fmt.Fprint(stderr, " ('spool list' shows what the running edgesink holds)")
			}
			fmt.Fprintln(stderr)
			return exitUsage
		}
		scfg, err := spoolConfigIn(cfg.Spool, h.cliStateDir)
		if err != nil {
			fmt.Fprintf(stderr, "edgesink spool: %v\n", err)
			return exitUsage
		}
		dir = scfg.Dir
	}

	switch verb {
	case "list":
		return listDisk(dir, stdout, stderr)
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
		fmt.Fprintf(stdout, "%s queued again in %s\n", rest[0], dir)
		tellService(dir, stdout, stderr)
	case "drop":
		err := spool.Drop(dir, rest[0])
		// A raw mail left beside a dead letter that was retried and then
		// delivered goes too.
		rerr := os.Remove(spool.RawPath(dir, rest[0]))
		if err != nil && !(errors.Is(err, spool.ErrNotFound) && rerr == nil) {
			return spoolFailed(stderr, err)
		}
		if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return spoolFailed(stderr, rerr)
		}
		fmt.Fprintf(stdout, "%s dropped\n", rest[0])
	case "replay":
		a, err := replayFromDisk(dir, rest[0], templates)
		if err != nil {
			return spoolFailed(stderr, err)
		}
		fmt.Fprintf(stdout, "%s replayed as %s in %s\n", rest[0], a.ID, dir)
		tellService(dir, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "edgesink spool: unknown action %q\n\n", verb)
		return fs.usageError()
	}
	return exitOK
}

// tellService sends SIGHUP to the edgesink holding the spool's lock, so it
// takes up what was put back now, and says what it did.
func tellService(dir string, stdout, stderr io.Writer) {
	pid, err := spool.Holder(dir)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "edgesink spool: cannot tell whether an edgesink runs on %s: %v; 'systemctl reload edgesink' takes it up now\n", dir, err)
	case pid == 0:
		fmt.Fprintf(stdout, "no edgesink is running on %s: it is delivered at the next start\n", dir)
	default:
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			fmt.Fprintf(stderr, "edgesink spool: could not signal the running edgesink (pid %d): %v; run 'sudo systemctl reload edgesink'\n", pid, err)
			return
		}
		fmt.Fprintf(stdout, "told the running edgesink (pid %d) to take it up now (SIGHUP)\n", pid)
	}
}

func orDefaults(file string) string {
	if file == "" {
		return "the built-in config"
	}
	return file
}

func spoolFailed(stderr io.Writer, err error) int {
	hint := ""
	if errors.Is(err, os.ErrPermission) {
		hint = " (the service's spool belongs to its user: run this with sudo)"
	}
	fmt.Fprintf(stderr, "edgesink spool: %v%s\n", err, hint)
	if errors.Is(err, spool.ErrNotFound) {
		return exitUsage
	}
	return exitRuntime
}

// listDisk lists a disk spool read from its directory.
func listDisk(dir string, stdout, stderr io.Writer) int {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "spool %s is empty (it does not exist yet)\n", dir)
		return exitOK
	}
	items, err := spool.List(dir)
	if err != nil {
		return spoolFailed(stderr, err)
	}
	if len(items) == 0 {
		fmt.Fprintf(stdout, "spool %s is empty\n", dir)
		return exitOK
	}
	printItems(stdout, items)
	fmt.Fprintf(stdout, "spool %s: %s\n", dir, spool.StatsOf(items))
	return exitOK
}

// listRunning lists what the running edgesink's memory spool holds, asked
// over its control socket.
func listRunning(cfg Config, h host, stdout, stderr io.Writer) int {
	dir := cfg.Spool.Dir
	if dir == "" {
		var err error
		if dir, err = h.cliStateDir(); err != nil {
			fmt.Fprintf(stderr, "edgesink spool: %v\n", err)
			return exitUsage
		}
	}
	items, err := spool.Running(dir)
	if err != nil {
		fmt.Fprintf(stderr, "edgesink spool: the spool is in memory and %v\n", err)
		return exitRuntime
	}
	where := "memory spool of the running edgesink"
	if len(items) == 0 {
		fmt.Fprintf(stdout, "%s is empty\n", where)
		return exitOK
	}
	printItems(stdout, items)
	fmt.Fprintf(stdout, "%s: %s\n", where, spool.StatsOf(items))
	return exitOK
}

// printItems is the table 'spool list' prints.
func printItems(stdout io.Writer, items []spool.Item) {
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
}

// replayFromDisk runs dead letter id's raw mail through extraction and
// classification (by templates) into the queue of the disk spool in dir.
func replayFromDisk(dir, id string, templates classify.Config) (*sink.Alert, error) {
	if !spool.ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not an alert id", spool.ErrNotFound, id)
	}
	dl, err := spool.ReadDeadLetter(dir, id)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(spool.RawPath(dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: the raw mail of %s was not kept (%s)", spool.ErrNotFound, id, spool.RawPath(dir, id))
	}
	if err != nil {
		return nil, err
	}
	c, err := classify.Load(templates)
	if err != nil {
		return nil, err
	}
	enqueue := sink.HandlerFunc(func(_ context.Context, a *sink.Alert) error { return spool.Enqueue(dir, a) })
	return replay(context.Background(), raw, dl.Alert, classify.New(enqueue, c))
}
