package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"time"
)

// ControlName is the Unix socket, beside the instance lock, on which a
// running edgesink with a memory spool answers 'edgesink spool list': what
// it holds lives only in its RAM. (A disk spool is read from its directory.)
const ControlName = "control.sock"

// controlTimeout bounds one answer on the control socket.
const controlTimeout = 5 * time.Second

// ServeControl answers every connection on l with the spool's items (queued
// alerts and dead letters, as List gives them for a disk spool) as JSON, and
// closes it. It returns when l is closed; the caller owns l.
func (s *Spool) ServeControl(l net.Listener) error {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("spool: control socket: %w", err)
		}
		_ = c.SetDeadline(time.Now().Add(controlTimeout))
		_ = json.NewEncoder(c).Encode(s.items())
		_ = c.Close()
	}
}

// items lists what the spool holds in RAM, oldest first.
func (s *Spool) items() []Item {
	var items []Item
	s.mu.Lock()
	for _, e := range s.pending {
		a := e.alert
		items = append(items, Item{ID: a.ID, State: "queued", Device: a.Device, Subject: a.Subject, ReceivedAt: a.ReceivedAt})
	}
	s.mu.Unlock()
	for _, d := range s.DeadLetters() {
		a := d.Alert
		items = append(items, Item{ID: a.ID, State: "dead", Device: a.Device, Subject: a.Subject, ReceivedAt: a.ReceivedAt,
			Output: d.Output, Reason: d.Reason})
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	return items
}

// ErrNotRunning: no edgesink answers on the control socket in that directory.
var ErrNotRunning = errors.New("spool: no running edgesink answers there")

// Running asks the edgesink whose control socket is in dir (its lock
// directory) what its memory spool holds.
func Running(dir string) ([]Item, error) {
	path := filepath.Join(dir, ControlName)
	c, err := net.DialTimeout("unix", path, controlTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrNotRunning, path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	var items []Item
	if err := json.NewDecoder(c).Decode(&items); err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", path, err)
	}
	return items, nil
}
