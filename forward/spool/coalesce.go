package spool

// Coalescing of alert storms, inside the one delivery engine.
//
// An alert whose Event has a type (other than "other") has a key: device,
// channel, event type. The first alert of a key opens a window
// (coalesce.window) and is delivered at once. Alerts of the same key that
// arrive while the window is open are folded: stored like any alert (the
// device's 250 still means the record is fsynced), but with their bodies
// cut to the text's first line and a "folded" mark, and not delivered on
// their own. When the window closes, one follow-up alert goes out: the
// latest folded alert with count, first_at, last_at and folded_ids. The
// folded records stay in the queue until the follow-up is delivered, so a
// crash replays them (after a restart they go out at once as a follow-up):
// the ids a consumer sees, counting folded_ids, always cover every mail.
//
// A stop is never folded: it first flushes what its key has folded, then is
// delivered, and the next alert of the key opens a new window. "other" and
// alerts without an event are never coalesced (one mail, one message).
//
// Auto-stop: event types that never send an end (coalesce.auto_stop, e.g.
// motion: 60s) get a synthetic stop that long after the key's latest start,
// marked synthetic. Which keys are in start is kept in coalesce.json beside
// the queue, written (off the 250's path, by one goroutine) only when a key
// enters start and when its stop was delivered, so an idle or steadily
// storming edgesink does not write it. After a restart every key left in
// start gets its stop auto_stop after its latest start known (the file, or
// a start record still queued), at the latest auto_stop from now.
//
// Clocks: windows and auto-stop run on timers and on time.Now values, which
// carry Go's monotonic reading, so an NTP step on a Pi without a real-time
// clock neither closes nor stretches them. Only what crosses a restart is
// wall-clock (the latest start in coalesce.json and a record's
// received_at); it is clamped to [0, auto_stop], so a clock that jumped at
// boot makes a stop come early or at most auto_stop late, never never.
//
// Mode off has no coalescing: every mail waits for its own delivery.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// DefaultCoalesceWindow is coalesce.window's default.
const DefaultCoalesceWindow = 30 * time.Second

// CoalesceConfig is the coalesce section of the configuration file.
type CoalesceConfig struct {
	Disabled bool          `yaml:"disabled"` // every alert delivered on its own
	Window   time.Duration `yaml:"window"`   // from the first alert of a key to its follow-up
	// AutoStop is, per event type, how long after the latest start a
	// synthetic stop is sent; a type not listed (or 0) gets none.
	AutoStop map[string]time.Duration `yaml:"auto_stop"`
}

// DefaultCoalesceConfig is coalescing as edgesink runs it unless told
// otherwise: 30 s windows, motion stops 60 s after its latest start.
func DefaultCoalesceConfig() CoalesceConfig {
	return CoalesceConfig{Window: DefaultCoalesceWindow, AutoStop: map[string]time.Duration{"motion": time.Minute}}
}

// Validate reports the first setting that cannot work.
func (c CoalesceConfig) Validate() error {
	if c.Window < 0 {
		return config.Bad("window", "must not be negative (disabled: true turns coalescing off)")
	}
	for typ, d := range c.AutoStop {
		if d < 0 {
			return config.Bad("auto_stop", "%s: must not be negative", typ)
		}
	}
	return nil
}

// Event states and the type never coalesced.
const (
	stateStart = "start"
	stateStop  = "stop"
	typeOther  = "other"
)

// coalesceFile is the auto-stop state in a disk spool's directory.
const coalesceFile = "coalesce.json"

type coalesceKey struct{ device, channel, typ string }

// keyOf is a's coalescing key; false for an alert never coalesced.
func keyOf(a *sink.Alert) (coalesceKey, bool) {
	ev := a.Event
	if ev == nil || ev.Type == "" || ev.Type == typeOther {
		return coalesceKey{}, false
	}
	return coalesceKey{a.Device, ev.Channel, ev.Type}, true
}

func isStop(a *sink.Alert) bool { return a.Event != nil && a.Event.State == stateStop }

// foldWindow is an open coalescing window: the alerts folded so far.
type foldWindow struct {
	timer  *time.Timer
	folded []*entry
}

// started is a key in start: when its latest start came (monotonic) and
// that alert's metadata, from which its synthetic stop is made.
type started struct {
	last   *sink.Alert
	lastAt time.Time
	timer  *time.Timer
}

// coalescer folds storms and sends synthetic stops for one Spool. Lock
// order: coalescer.mu before Spool.mu, never the other way.
type coalescer struct {
	s   *Spool
	cfg CoalesceConfig

	mu       sync.Mutex
	closed   bool
	windows  map[coalesceKey]*foldWindow
	started  map[coalesceKey]*started
	stopping map[string]*sink.Alert // synthetic stop id -> the start it ends, until delivered

	path    string        // coalesce.json; "" in memory mode
	dirty   chan struct{} // to the writer: the set of keys in start changed
	written chan struct{} // closed when the writer has exited
}

func newCoalescer(s *Spool, cfg CoalesceConfig, path string) *coalescer {
	c := &coalescer{s: s, cfg: cfg, path: path, windows: make(map[coalesceKey]*foldWindow),
		started: make(map[coalesceKey]*started), stopping: make(map[string]*sink.Alert),
		dirty: make(chan struct{}, 1), written: make(chan struct{})}
	if path == "" {
		close(c.written)
	} else {
		go c.writer()
	}
	return c
}

// folds decides, before a new alert is stored, whether it is folded into an
// open window (true) or delivered (false; the first of its key opens one).
func (c *coalescer) folds(a *sink.Alert) bool {
	if c == nil || isStop(a) {
		return false
	}
	k, ok := keyOf(a)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if _, open := c.windows[k]; open {
		return true
	}
	c.openLocked(k)
	return false
}

func (c *coalescer) openLocked(k coalesceKey) *foldWindow {
	w := &foldWindow{}
	w.timer = time.AfterFunc(c.cfg.Window, func() { c.close(k, w) })
	c.windows[k] = w
	return w
}

// foldedCopy is what a folded alert keeps: its metadata and the first line
// of its text, so a storm cannot fill spool.max_size.
func foldedCopy(a *sink.Alert) *sink.Alert {
	f := *a
	f.Text, f.HTML = forward.FirstLine(a.Text), ""
	return &f
}

// accepted takes a new alert once it is stored: delivers it, folds it, or,
// for a stop, flushes its key first.
func (c *coalescer) accepted(e *entry) {
	k, ok := keyOf(e.alert)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !ok:
		c.s.dispatch(e)
		return
	case e.folded:
		if w := c.windows[k]; w != nil && !c.closed {
			w.folded = append(w.folded, e)
		} else { // the window closed while e was being stored
			c.followUpLocked([]*entry{e})
		}
	case isStop(e.alert):
		c.flushLocked(k)
		if _, ok := c.started[k]; ok {
			c.started[k].timer.Stop()
			delete(c.started, k)
			c.markDirtyLocked()
		}
		c.s.dispatch(e)
		return
	default:
		c.s.dispatch(e)
	}
	if e.alert.Event.State == stateStart {
		c.startLocked(k, e.alert, time.Now())
	}
}

// close ends window w of key k: its follow-up goes out.
func (c *coalescer) close(k coalesceKey, w *foldWindow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.windows[k] != w {
		return
	}
	c.flushLocked(k)
}

// flushLocked closes k's window, if open, sending its follow-up.
func (c *coalescer) flushLocked(k coalesceKey) {
	w := c.windows[k]
	if w == nil {
		return
	}
	w.timer.Stop()
	delete(c.windows, k)
	c.followUpLocked(w.folded)
}

// flushAll closes every window now (Drain, and after a restart).
func (c *coalescer) flushAll() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.windows {
		c.flushLocked(k)
	}
}

// followUpLocked queues the alert that stands for folded: the latest of
// them with count, first and last times and every id. Its id is the
// latest's with "-folded", the same when a restart replays the same
// alerts. It is not stored: the folded records are, until it is delivered.
func (c *coalescer) followUpLocked(folded []*entry) {
	if len(folded) == 0 {
		return
	}
	latest := folded[len(folded)-1]
	f := *latest.alert
	f.ID = latest.alert.ID + "-folded"
	f.Count = len(folded)
	f.FirstAt, f.LastAt = folded[0].alert.ReceivedAt, latest.alert.ReceivedAt
	f.FoldedIDs = make([]string, len(folded))
	for i, m := range folded {
		f.FoldedIDs[i] = m.alert.ID
		if t := m.alert.ReceivedAt; t.Before(f.FirstAt) {
			f.FirstAt = t
		}
		if t := m.alert.ReceivedAt; t.After(f.LastAt) {
			f.LastAt = t
		}
	}
	e := &entry{alert: &f, route: latest.route, members: folded, waiting: c.s.routed(latest.route)}
	if !c.s.enqueue(e) {
		return // already queued: Rescan found the same alerts again
	}
	c.s.dispatch(e)
}

// adoptFolded takes a folded alert found in the store: it joins its key's
// window; Open and Rescan flush them all once loaded.
func (c *coalescer) adoptFolded(e *entry) {
	k, _ := keyOf(e.alert)
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.windows[k]
	if w == nil {
		w = c.openLocked(k)
	}
	w.folded = append(w.folded, e)
}

// startLocked notes a start of k received at at (monotonic, or a restored
// wall time turned into one). A key new in start is written to the file.
func (c *coalescer) startLocked(k coalesceKey, a *sink.Alert, at time.Time) {
	d := c.cfg.AutoStop[k.typ]
	if d <= 0 || c.closed {
		return
	}
	st := c.started[k]
	if st == nil {
		st = &started{}
		c.started[k] = st
		st.timer = time.AfterFunc(max(0, d-time.Since(at)), func() { c.autoStop(k, st) })
		c.markDirtyLocked()
	}
	if st.last == nil || !at.Before(st.lastAt) {
		st.last, st.lastAt = foldedCopy(a), at
	}
}

// autoStop fires d after st's timer was set; the stop goes out only once
// the latest start is d old, else the timer is set again for the rest.
func (c *coalescer) autoStop(k coalesceKey, st *started) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.started[k] != st {
		return
	}
	if rest := c.cfg.AutoStop[k.typ] - time.Since(st.lastAt); rest > 0 {
		st.timer.Reset(rest)
		return
	}
	delete(c.started, k)
	c.flushLocked(k)
	c.sendStopLocked(st.last)
}

// sendStopLocked queues the synthetic stop that ends start: its metadata,
// state stop, synthetic, id the start's with "-stop". The key stays in the
// file until the stop is delivered.
func (c *coalescer) sendStopLocked(start *sink.Alert) {
	stop := *start
	ev := *start.Event
	ev.State = stateStop
	stop.Event = &ev
	stop.ID = start.ID + "-stop"
	stop.ReceivedAt = time.Now().UTC()
	stop.Synthetic = true
	stop.Count, stop.FirstAt, stop.LastAt, stop.FoldedIDs = 0, time.Time{}, time.Time{}, nil
	c.stopping[stop.ID] = start
	route, keep := c.s.routeFor(&stop)
	if !keep {
		c.s.log.Info("route: synthetic stop dropped by rule", "id", stop.ID, "device", stop.Device, "rule", route.rule)
		delete(c.stopping, stop.ID)
		c.markDirtyLocked()
		return
	}
	e := &entry{alert: &stop, route: route.Route, waiting: c.s.routed(route.Route)}
	e.onDone = func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.stopping[stop.ID]; ok {
			delete(c.stopping, stop.ID)
			c.markDirtyLocked()
		}
	}
	if c.s.enqueue(e) {
		c.s.log.Info("coalesce: synthetic stop", "id", stop.ID, "device", stop.Device, "type", ev.Type, "channel", ev.Channel)
		c.s.dispatch(e)
	}
}

func (c *coalescer) markDirtyLocked() {
	if c.path == "" || c.closed {
		return
	}
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// stateFile is coalesce.json: the keys in start (including those whose
// synthetic stop is not delivered yet) with their latest start.
type stateFile struct {
	Version int          `json:"v"`
	Started []startEntry `json:"started"`
}

type startEntry struct {
	LastAt time.Time   `json:"last_at"` // wall clock: it crosses a restart
	Alert  *sink.Alert `json:"alert"`   // the latest start, metadata only
}

// writer owns coalesce.json: one write (temporary file, fsync, rename,
// directory fsync) per change of the keys in start, never on the 250's path.
func (c *coalescer) writer() {
	defer close(c.written)
	for range c.dirty {
		c.mu.Lock()
		f := stateFile{Version: FormatVersion, Started: []startEntry{}}
		for _, st := range c.started {
			f.Started = append(f.Started, startEntry{LastAt: wallOf(st.lastAt), Alert: st.last})
		}
		for _, a := range c.stopping {
			f.Started = append(f.Started, startEntry{Alert: a}) // zero time: stop at once after a restart
		}
		c.mu.Unlock()
		sort.Slice(f.Started, func(i, j int) bool { return f.Started[i].Alert.ID < f.Started[j].Alert.ID })
		data, err := json.Marshal(f)
		if err == nil {
			err = writeFileSync(c.path, data)
		}
		if err != nil {
			c.s.log.Error("coalesce: cannot save which keys are in start; after a restart their synthetic stops may be missing", "file", c.path, "err", err)
		}
	}
}

// wallOf drops t's monotonic reading: what is stored is wall-clock.
func wallOf(t time.Time) time.Time { return t.Round(0).UTC() }

// restore rebuilds, after a restart, which keys are in start: from
// coalesce.json, then from the records still queued (oldest first), whose
// starts and stops are newer. A wall time becomes a monotonic one clamped
// to [now-auto_stop, now].
func (c *coalescer) restore(recovered []stored) error {
	var f stateFile
	if c.path != "" {
		data, err := os.ReadFile(c.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("spool: read %s: %w", c.path, err)
		default:
			if err := json.Unmarshal(data, &f); err != nil {
				c.s.log.Warn("coalesce: unreadable state file ignored; keys that were in start get no synthetic stop", "file", c.path, "err", err)
				f = stateFile{}
			} else if f.Version > FormatVersion {
				return fmt.Errorf("spool: %s: version %d: %w", c.path, f.Version, errNewerFormat)
			}
		}
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range f.Started {
		if st.Alert == nil || st.Alert.Event == nil {
			continue
		}
		if k, ok := keyOf(st.Alert); ok {
			c.startLocked(k, st.Alert, c.sinceRestart(now, k, st.LastAt))
		}
	}
	for _, r := range recovered {
		k, ok := keyOf(r.alert)
		if !ok {
			continue
		}
		switch r.alert.Event.State {
		case stateStart:
			c.startLocked(k, r.alert, c.sinceRestart(now, k, r.alert.ReceivedAt))
		case stateStop:
			if st, ok := c.started[k]; ok && !r.alert.ReceivedAt.Before(wallOf(st.lastAt)) {
				st.timer.Stop()
				delete(c.started, k)
				c.markDirtyLocked()
			}
		}
	}
	return nil
}

// sinceRestart turns a stored wall time into a monotonic one, no older
// than auto_stop and not in the future.
func (c *coalescer) sinceRestart(now time.Time, k coalesceKey, wall time.Time) time.Time {
	age := now.Sub(wall) // wall - wall: no monotonic reading in wall
	age = max(0, min(age, c.cfg.AutoStop[k.typ]))
	return now.Add(-age)
}

// shut stops every timer and the writer; what is folded stays stored.
func (c *coalescer) shut() {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		for _, w := range c.windows {
			w.timer.Stop()
		}
		for _, st := range c.started {
			st.timer.Stop()
		}
		if c.path != "" {
			close(c.dirty)
		}
	}
	c.mu.Unlock()
	<-c.written
}

// storedPath is where a disk spool keeps coalesce.json.
func storedPath(dir string) string { return filepath.Join(dir, coalesceFile) }
