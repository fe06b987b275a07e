// Package registry remembers the devices edgesink has announced: their
// names, the template that recognised them, the event types and channels
// they sent. Home Assistant discovery (forward/hass) announces from it, the
// status page lists it, 'edgesink devices list' prints it.
//
// The contract: the file is written (temporary file, fsync, rename,
// directory fsync) only when a device is new, sends something it never sent
// before (a new event type or channel), or is forgotten — never per mail. A
// device's last-seen time is kept in memory only. Everything it holds is
// bounded (MaxDevices, MaxChannels, the event vocabulary), so a hostile
// sender cannot make it grow without end.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edgesink/edgesink/sink"
)

// FileName is the registry's file in its directory.
const FileName = "devices.json"

// Bounds on what one registry holds.
const (
	MaxDevices  = 1000 // beyond, new devices are not registered (their alerts still flow)
	MaxChannels = 32   // per device; beyond, new channels are not registered
	maxTemplate = 64
)

// ErrFull: the registry holds MaxDevices devices already.
var ErrFull = errors.New("registry: full")

// Device is one registered device.
type Device struct {
	Name       string    `json:"name"`
	Template   string    `json:"template,omitempty"`
	EventTypes []string  `json:"event_types"`
	Channels   []string  `json:"channels,omitempty"`
	Snapshots  bool      `json:"snapshots,omitempty"` // it sent an image
	FirstSeen  time.Time `json:"first_seen"`
	// LastSeen is when its last alert came, since this process started
	// (never written to disk: that would be a write per mail).
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// Sighting is what one alert says about its device.
type Sighting struct {
	Template  string // the device template that recognised the mail, "" if none
	EventType string // "" counts as nothing new
	Channel   string // "" for none; must be safe already (sink.SafeName)
	Snapshot  bool   // the alert carried an image
}

// Change tells what Seen learnt.
type Change int

// Changes.
const (
	Known Change = iota // nothing new
	New                 // a device never seen (or forgotten since)
	Grown               // a known device with a new event type, channel or template
)

// Registry is the set of known devices, safe for concurrent use.
type Registry struct {
	path string // "" keeps it in memory only

	mu      sync.Mutex
	devices map[string]*Device
	now     func() time.Time
}

// file is the registry's format on disk.
type file struct {
	Version int       `json:"v"`
	Devices []*Device `json:"devices"`
}

// Open loads the registry kept in dir, creating nothing until the first
// change. An empty dir keeps the registry in memory only.
func Open(dir string) (*Registry, error) {
	r := &Registry{devices: map[string]*Device{}, now: time.Now}
	if dir == "" {
		return r, nil
	}
	r.path = filepath.Join(dir, FileName)
	data, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("registry: %s: %w", r.path, err)
	}
	for _, d := range f.Devices {
		if d == nil || d.Name == "" || sink.SafeName(d.Name) != d.Name {
			continue
		}
		d.LastSeen = time.Time{}
		r.devices[d.Name] = d
	}
	return r, nil
}

// Path is the registry's file, "" when it is kept in memory.
func (r *Registry) Path() string { return r.path }

// List returns a copy of every device, by name.
func (r *Registry) List() []Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Device, 0, len(r.devices))
	for _, d := range r.devices {
		c := *d
		c.EventTypes = slices.Clone(d.EventTypes)
		c.Channels = slices.Clone(d.Channels)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one device.
func (r *Registry) Get(name string) (Device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[name]
	if !ok {
		return Device{}, false
	}
	c := *d
	c.EventTypes = slices.Clone(d.EventTypes)
	c.Channels = slices.Clone(d.Channels)
	return c, true
}

// Seen records an alert of device name and tells what was new. The file is
// written only when something was; if that write fails, the change is
// undone (it is tried again at the device's next alert) and the error
// returned.
func (r *Registry) Seen(name string, s Sighting) (Change, error) {
	if name == "" || sink.SafeName(name) != name {
		return Known, fmt.Errorf("registry: device name %q is not a safe name", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	d, ok := r.devices[name]
	change := Known
	var undo func()
	if !ok {
		if len(r.devices) >= MaxDevices {
			return Known, ErrFull
		}
		d = &Device{Name: name, EventTypes: []string{}, FirstSeen: now.UTC().Round(time.Second)}
		r.devices[name] = d
		change = New
		undo = func() { delete(r.devices, name) }
	} else {
		prev := *d
		prev.EventTypes, prev.Channels = slices.Clone(d.EventTypes), slices.Clone(d.Channels)
		undo = func() { *d = prev }
	}
	if t := s.Template; len(t) <= maxTemplate && specificity(t) > specificity(d.Template) {
		d.Template = t
		change = grow(change)
	}
	if t := s.EventType; t != "" && !slices.Contains(d.EventTypes, t) {
		d.EventTypes = append(d.EventTypes, t)
		sort.Strings(d.EventTypes)
		change = grow(change)
	}
	if c := s.Channel; c != "" && sink.SafeName(c) == c && !slices.Contains(d.Channels, c) && len(d.Channels) < MaxChannels {
		d.Channels = append(d.Channels, c)
		sort.Strings(d.Channels)
		change = grow(change)
	}
	if s.Snapshot && !d.Snapshots {
		d.Snapshots = true
		change = grow(change)
	}
	d.LastSeen = now
	if change == Known {
		return Known, nil
	}
	if err := r.saveLocked(); err != nil {
		undo()
		return Known, err
	}
	return change, nil
}

// Forget removes a device and tells whether it was there.
func (r *Registry) Forget(name string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[name]
	if !ok {
		return false, nil
	}
	delete(r.devices, name)
	if err := r.saveLocked(); err != nil {
		r.devices[name] = d
		return false, err
	}
	return true, nil
}

// saveLocked writes the registry durably: a temporary file, fsync, rename,
// directory fsync.
func (r *Registry) saveLocked() error {
	if r.path == "" {
		return nil
	}
	f := file{Version: 1, Devices: make([]*Device, 0, len(r.devices))}
	for _, d := range r.devices {
		c := *d
		c.LastSeen = time.Time{}
		f.Devices = append(f.Devices, &c)
	}
	sort.Slice(f.Devices, func(i, j int) bool { return f.Devices[i].Name < f.Devices[j].Name })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("registry: encode: %w", err)
	}
	if err := WriteFileDurably(r.path, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// WriteFileDurably replaces path with data so that after a power cut it
// holds either the old or the new content: a temporary file beside it,
// fsynced, renamed over it, and the directory fsynced.
func WriteFileDurably(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: no such file
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// grow marks a known device as grown; a new one stays new.
func grow(c Change) Change {
	if c == Known {
		return Grown
	}
	return c
}

// specificity ranks template names so a device's template only ever
// becomes more specific (at most twice), never flips between two mails'
// templates: a write per mail.
func specificity(t string) int {
	switch t {
	case "":
		return 0
	case "none":
		return 1
	case "generic":
		return 2
	}
	return 3
}
