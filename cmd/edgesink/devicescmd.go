package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgesink/edgesink/forward/hass"
	"github.com/edgesink/edgesink/forward/registry"
	"github.com/edgesink/edgesink/forward/spool"
)

const devicesUsage = `edgesink devices - the devices edgesink announced to Home Assistant

Usage:
  edgesink devices list [flags]          every device that mailed, with what it sent
  edgesink devices forget [flags] NAME   remove a device from Home Assistant (an empty
                                         retained config) and from the registry; it
                                         comes back if it mails again

The running edgesink is asked over its control socket (devices.sock beside
its lock); when none runs, the registry file (devices.json) is read and
changed directly, and Home Assistant keeps a forgotten device until it is
deleted there too. The directory is --spool-dir, else the one --config (default
/etc/edgesink/edgesink.yaml when installed) gives.

Flags:
`

func runDevices(args []string, stdout, stderr io.Writer, h host) int {
	fs := newFlagSet("devices", devicesUsage, stdout, stderr)
	configPath := fs.String("config", "", "config `file` whose instance directory to use (default: the installed one, if any)")
	dirFlag := fs.String("spool-dir", "", "the instance `directory` (default: from the config)")
	if ok, code := fs.parse(args); !ok {
		return code
	}
	verb, rest := fs.Arg(0), fs.Args()
	if len(rest) > 0 {
		rest = rest[1:]
	}
	if (verb == "list" && len(rest) != 0) || (verb == "forget" && len(rest) != 1) || (verb != "list" && verb != "forget") {
		return fs.usageError()
	}
	dir := *dirFlag
	if dir == "" {
		cfg, _, err := h.cliConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "edgesink devices: %v (or name the directory with --spool-dir)\n", err)
			return exitUsage
		}
		dir = cliLockDir(cfg, h)
	}
	req := hass.Request{Op: verb}
	if verb == "forget" {
		req.Name = rest[0]
	}
	rep, err := hass.Ask(dir, req)
	running := err == nil
	if err != nil && !errors.Is(err, hass.ErrNotRunning) {
		fmt.Fprintf(stderr, "edgesink devices: %v\n", err)
		return exitRuntime
	}
	if !running {
		if pid, _ := spool.Holder(dir); pid > 0 {
			fmt.Fprintf(stderr, "edgesink devices: the edgesink running on %s (pid %d) does not answer on %s; "+
				"its Home Assistant discovery may be off (homeassistant.enabled)\n", dir, pid, hass.ControlName)
			return exitRuntime
		}
		reg, err := registry.Open(dir)
		if err != nil {
			fmt.Fprintf(stderr, "edgesink devices: %v\n", err)
			return exitRuntime
		}
		switch verb {
		case "list":
			rep.Devices = reg.List()
		case "forget":
			if rep.Forgot, err = reg.Forget(req.Name); err != nil {
				fmt.Fprintf(stderr, "edgesink devices: %v\n", err)
				return exitRuntime
			}
		}
	}
	switch verb {
	case "list":
		if len(rep.Devices) == 0 {
			fmt.Fprintf(stdout, "no devices registered in %s\n", dir)
			return exitOK
		}
		printDevices(stdout, rep.Devices, running)
	case "forget":
		switch {
		case !rep.Forgot:
			fmt.Fprintf(stderr, "edgesink devices: no device %q registered in %s\n", req.Name, dir)
			return exitUsage
		case running:
			fmt.Fprintf(stdout, "%s forgotten: removed from Home Assistant and from the registry\n", req.Name)
		default:
			fmt.Fprintf(stdout, "%s removed from the registry; no edgesink is running, so delete it in Home Assistant too "+
				"(Settings > Devices > MQTT)\n", req.Name)
		}
	}
	return exitOK
}

// printDevices is the table 'devices list' prints; LAST SEEN only when
// the running edgesink answered (it is not kept on disk).
func printDevices(w io.Writer, devices []registry.Device, running bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTEMPLATE\tEVENT TYPES\tCHANNELS\tFIRST SEEN\tLAST SEEN")
	for _, d := range devices {
		last := "-"
		if !d.LastSeen.IsZero() {
			last = d.LastSeen.Local().Format(time.DateTime)
		} else if !running {
			last = "(not running)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, orDash(d.Template), orDash(strings.Join(d.EventTypes, ",")),
			orDash(strings.Join(d.Channels, ",")), d.FirstSeen.Local().Format(time.DateTime), last)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
