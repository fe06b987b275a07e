// Package spool is the durable queue between the sink and the outputs.
//
// The contract: Handle returns nil only once the alert is on disk and
// flushed (and the file's name with it), so the sink's 250 survives a power
// cut. From
// then on the spool delivers it to every output, retrying with backoff, in
// arrival order per device, until each output confirmed it or gave up on it
// for good (dead letter). Only then is it removed from the store. After a crash or
// restart everything still in the queue is delivered again; an output that
// had already confirmed an alert may see it twice (at least once, same id).
//
// Storms are coalesced here too (coalesce.go): per device, channel and
// event type, the first alert goes out at once and the rest of a window
// becomes one follow-up; the folded alerts are stored like any other until
// it is delivered. Routing rules (a Router, router.go) decide, when an alert
// is accepted, which outputs take it and with which template.
//
// Mode "off" keeps no queue at all: Handle waits until every output
// confirmed the alert and returns their failure if one did not (the device
// is told 451 or 554 and sends again). Nothing is retried and nothing is
// dead-lettered; delivery order per device and the lanes are the same.
//
// Cost on an SD card: alerts that arrive together are appended as one
// batch to a segment, a file made once and zero-filled, and flushed with
// one fdatasync (store.go); a delivered alert is marked in place, and a
// segment goes once it is full and all of it is delivered. Alone, that is
// one small write and flush per mail. Nothing polls. Mode "memory"
// keeps the queue in RAM instead: no writes at all, and alerts not yet
// delivered are lost on a restart or power cut.
package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Modes.
const (
	ModeDisk   = "disk"   // durable queue: Handle returns once the alert is fsynced
	ModeMemory = "memory" // queue in RAM: Handle returns at once, lost on restart
	ModeOff    = "off"    // no queue: Handle returns once every output confirmed
)

// Defaults for Config fields left empty.
const (
	DefaultMaxAlerts      = 10000
	DefaultMaxBytes       = 32 << 20
	DefaultMaxAttempts    = 5
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = 5 * time.Minute
	DefaultDeliverTimeout = 30 * time.Second
	DefaultLanes          = 16
)

// Config bounds the spool. The yaml names are the keys of the
// configuration file's spool section.
type Config struct {
	Dir            string        `yaml:"dir"`                   // required in disk mode
	Mode           string        `yaml:"mode"`                  // ModeDisk (default), ModeMemory or ModeOff
	MaxAlerts      int           `yaml:"max_alerts"`            // alerts held at once; beyond, Handle fails with sink.ErrStorageFull
	MaxBytes       int64         `yaml:"max_size" unit:"bytes"` // bytes held at once (alert JSON); likewise
	MaxAttempts    int           `yaml:"max_attempts"`          // permanent refusals by an output before its dead letter
	RetryMin       time.Duration `yaml:"retry_min"`             // first backoff; doubles up to RetryMax, with jitter
	RetryMax       time.Duration `yaml:"retry_max"`             //
	DeliverTimeout time.Duration `yaml:"deliver_timeout"`       // one delivery attempt to one output
	Lanes          int           `yaml:"-"`                     // deliveries in flight per output (one device never uses two); 0: DefaultLanes
	// Coalesce is the configuration file's coalesce section (coalesce.go);
	// zero: DefaultCoalesceConfig. Mode off never coalesces.
	Coalesce CoalesceConfig `yaml:"-"`
}

// DefaultConfig is the spool edgesink runs with unless told otherwise (the
// directory aside: the caller knows where state lives). The configuration
// file starts from it.
func DefaultConfig() Config {
	return Config{
		Mode:           ModeDisk,
		MaxAlerts:      DefaultMaxAlerts,
		MaxBytes:       DefaultMaxBytes,
		MaxAttempts:    DefaultMaxAttempts,
		RetryMin:       DefaultRetryMin,
		RetryMax:       DefaultRetryMax,
		DeliverTimeout: DefaultDeliverTimeout,
	}
}

// Validate reports the first setting that cannot work. It checks a whole
// Config, as Open has it after filling zero fields from DefaultConfig, so
// here a zero limit is an error. Errors name the setting's yaml key
// (config.KeyError).
func (c Config) Validate() error {
	if c.Mode != ModeDisk && c.Mode != ModeMemory && c.Mode != ModeOff {
		return config.Bad("mode", "%q: want disk, memory or off", c.Mode)
	}
	if c.Mode == ModeDisk && c.Dir == "" {
		return config.Bad("dir", "no directory given")
	}
	for _, l := range []struct {
		key string
		v   int64
	}{
		{"max_alerts", int64(c.MaxAlerts)}, {"max_size", c.MaxBytes}, {"max_attempts", int64(c.MaxAttempts)},
		{"retry_min", int64(c.RetryMin)}, {"deliver_timeout", int64(c.DeliverTimeout)},
	} {
		if l.v <= 0 {
			return config.Bad(l.key, "must be greater than zero")
		}
	}
	if c.RetryMax < c.RetryMin {
		return config.Bad("retry_max", "must be at least retry_min")
	}
	if c.Lanes < 0 {
		return errors.New("lanes must be positive")
	}
	if err := c.Coalesce.Validate(); err != nil {
		return err // its keys are the coalesce section's: cmd validates that section itself
	}
	return nil
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	setDefault(&c.Mode, d.Mode)
	setDefault(&c.MaxAlerts, d.MaxAlerts)
	setDefault(&c.MaxBytes, d.MaxBytes)
	setDefault(&c.MaxAttempts, d.MaxAttempts)
	setDefault(&c.RetryMin, d.RetryMin)
	setDefault(&c.RetryMax, d.RetryMax)
	setDefault(&c.DeliverTimeout, d.DeliverTimeout)
	setDefault(&c.Lanes, DefaultLanes)
	if c.Coalesce.Window == 0 {
		c.Coalesce.Window = DefaultCoalesceWindow
	}
	if c.Coalesce.AutoStop == nil {
		c.Coalesce.AutoStop = DefaultCoalesceConfig().AutoStop
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("spool: %w", err)
	}
	return c, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Spool is the durable queue. It is the sink's Handler.
type Spool struct {
	cfg     Config
	store   store
	outputs []forward.Forwarder
	log     *slog.Logger

	mu       sync.Mutex
	count    int
	bytes    int64
	jsonHeld int // bytes of the entries' json
	pending  map[string]*entry
	idle     chan struct{} // closed and replaced when the queue becomes empty
	lanes    [][]*lane     // [output][lane]

	everyOutput Route        // where an alert no rule routes goes: every output, by name (read-only)
	router      routerHolder // routing rules for new mail (router.go); SIGHUP swaps them
	co          *coalescer   // storms (coalesce.go); nil in mode off

	ctx    context.Context // cancelled by Close: deliveries stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	removals   chan *entry // delivered alerts whose files are to go
	removersWG sync.WaitGroup

	onDead    func(DeadLetter) // OnDeadLetter; nil: nobody listens
	onDecided func(Decision)   // OnDecided; nil: nobody listens
}

// removers is how many goroutines delete delivered alerts' files.
const removers = 4

var _ sink.Handler = (*Spool)(nil)

// entry is one alert in the queue.
type entry struct {
	alert   *sink.Alert
	route   Route // the outputs that deliver it
	size    int64
	waiting int  // outputs that have not finished with it
	dead    bool // an output gave up on it: its removal from the queue must be durable

	// Mode off: Handle waits for done, closed when every output finished,
	// and answers with errs. An alert Handle gave up waiting for is
	// abandoned: lanes that have not started it skip it.
	done      chan struct{}
	errs      []error
	abandoned bool

	// json is the alert's encoding, handed to the outputs (sink.WithJSON)
	// while the spool holds no more than maxJSONHeld of them; guarded by
	// Spool.mu once queued.
	json []byte

	folded  bool     // held for a follow-up, not delivered on its own (coalesce.go)
	members []*entry // a follow-up: the folded alerts it stands for, removed with it
	onDone  func()   // called once the alert has left the queue
}

// Open opens (creating if needed) the spool, recovers what a previous run
// left, and starts delivering to outputs.
func Open(cfg Config, log *slog.Logger, outputs ...forward.Forwarder) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(outputs) == 0 {
		return nil, errors.New("spool: no outputs")
	}
	s := &Spool{cfg: cfg, outputs: outputs, log: log.With("component", "spool"),
		pending: make(map[string]*entry), idle: make(chan struct{})}
	if cfg.Mode == ModeDisk {
		ds, err := openDiskStore(cfg.Dir)
		if err != nil {
			return nil, err
		}
		ds.onPartial = func(id string) {
			s.log.Warn("spool: removed alert cut short by a crash (never acknowledged; the device still has it)", "id", id)
		}
		ds.onHeld = func(name, to string, cause, moveErr error) {
			if moveErr != nil {
				s.log.Error("spool: queue file unreadable and could not be moved aside; skipped", "file", name, "err", cause, "move_err", moveErr)
				return
			}
			s.log.Error("spool: queue file unreadable (wrong owner or mode?), moved aside; fix it with 'edgesink spool retry ID'",
				"file", name, "moved_to", to, "err", cause)
		}
		s.store = ds
	} else {
		s.store = newMemoryStore()
		if cfg.Mode == ModeMemory {
			s.log.Warn("spool in memory: alerts accepted but not yet delivered are lost on restart or power cut")
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.removals = make(chan *entry, 1024)
	for range removers {
		s.removersWG.Add(1)
		go s.remover()
	}
	for _, out := range outputs {
		s.everyOutput.Outputs = append(s.everyOutput.Outputs, out.Name())
	}
	s.lanes = make([][]*lane, len(outputs))
	for i, out := range outputs {
		s.lanes[i] = make([]*lane, cfg.Lanes)
		for j := range s.lanes[i] {
			l := &lane{s: s, out: out, wake: make(chan struct{}, 1)}
			s.lanes[i][j] = l
			s.wg.Add(1)
			go l.run()
		}
	}

	if cfg.Mode != ModeOff && !cfg.Coalesce.Disabled {
		path := ""
		if cfg.Mode == ModeDisk {
			path = storedPath(cfg.Dir)
		}
		s.co = newCoalescer(s, cfg.Coalesce, path)
	}

	recovered, err := s.store.load(func(id, reason string) {
		s.log.Warn("spool: unreadable alert moved to dead letters", "id", id, "reason", reason)
	})
	if err == nil && s.co != nil {
		err = s.co.restore(recovered)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, r := range recovered {
		s.adopt(r)
	}
	s.co.flushAll() // folded alerts left from before go out as follow-ups now
	if len(recovered) > 0 {
		s.log.Info("spool: delivering alerts left from before", "count", len(recovered))
	}
	return s, nil
}

// Rescan queues alerts that appeared in the queue directory while running
// (put back by 'edgesink spool retry'). Alerts already queued are skipped.
func (s *Spool) Rescan() (int, error) {
	ds, ok := s.store.(*diskStore)
	if !ok {
		return 0, nil
	}
	found, err := ds.scan()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range found {
		if s.adopt(r) {
			n++
		}
	}
	s.co.flushAll()
	return n, nil
}

// adopt queues an alert found in the store, unless it is queued already.
// Alerts found are counted against the caps but never refused.
func (s *Spool) adopt(r stored) bool {
	route := r.route
	if s.routed(route) == 0 {
		s.log.Warn("spool: none of the outputs this alert was routed to is configured now; delivering it to every output",
			"id", r.alert.ID, "route", route.Outputs)
		route = Route{}
	}
	e := &entry{alert: r.alert, route: route, size: r.size, waiting: s.routed(route), folded: r.folded && s.co != nil}
	if !s.enqueue(e) {
		return false
	}
	if e.folded {
		s.co.adoptFolded(e)
	} else {
		s.dispatch(e)
	}
	return true
}

// enqueue adds e to the queue's books unless an alert of its id is there.
func (s *Spool) enqueue(e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.pending[e.alert.ID]; dup {
		return false
	}
	s.addPendingLocked(e)
	return true
}

// Outputs describes where alerts go, for the sink's log line.
func (s *Spool) Outputs() []string {
	names := make([]string, 0, len(s.outputs))
	for _, o := range s.outputs {
		if s.cfg.Mode == ModeOff {
			names = append(names, o.Name())
		} else {
			names = append(names, o.Name()+"(via "+s.cfg.Mode+" spool)")
		}
	}
	return names
}

// Handle stores a durably and queues it for every output. It fails with
// sink.ErrStorageFull when the spool is at its caps or the disk is full.
// In mode off it delivers a instead and returns once every output
// confirmed it, or with their errors; when ctx ends first, with a
// temporary error.
func (s *Spool) Handle(ctx context.Context, a *sink.Alert) error {
	if s.cfg.Mode == ModeOff {
		return s.handleDirect(ctx, a)
	}
	route, keep := s.routeFor(a)
	if !keep {
		s.log.Info("route: alert dropped by rule (outputs: none)", "id", a.ID, "device", a.Device, "rule", route.rule)
		s.decided(Decision{ID: a.ID, Dropped: true})
		return nil
	}
	fold := s.co.folds(a) // decided before storing: a folded record keeps metadata only
	s.decided(Decision{ID: a.ID, Outputs: route.Outputs, Folded: fold})
	if fold {
		a = foldedCopy(a)
	}
	alert, err := sink.JSON(ctx, a)
	if err != nil {
		return fmt.Errorf("spool: encode %s: %w", a.ID, err)
	}
	head, err := recordHead(route.Route, fold)
	if err != nil {
		return err
	}
	size := int64(len(head) + len(alert) + len(recordTail))
	e := &entry{alert: a, route: route.Route, size: size, waiting: s.routed(route.Route), folded: fold}
	if !fold {
		s.keepJSON(e, alert)
	}
	s.mu.Lock()
	if s.count+1 > s.cfg.MaxAlerts || s.bytes+size > s.cfg.MaxBytes {
		count, bytes := s.count, s.bytes
		s.mu.Unlock()
		s.log.Warn("spool full: refusing new mail until alerts are delivered",
			"alerts", count, "bytes", bytes, "max_alerts", s.cfg.MaxAlerts, "max_bytes", s.cfg.MaxBytes)
		return fmt.Errorf("spool: %w", sink.ErrStorageFull)
	}
	// Registered before the write: the caps hold under concurrent mail, and
	// a rescan never queues a file that is still being stored.
	s.addPendingLocked(e)
	s.mu.Unlock()

	if err := s.store.put(ctx, a.ID, head, alert, recordTail); err != nil {
		s.mu.Lock()
		s.removePendingLocked(e)
		s.mu.Unlock()
		return err
	}
	if s.co != nil {
		s.co.accepted(e)
	} else {
		s.dispatch(e)
	}
	return nil
}

// handleDirect is Handle in mode off.
func (s *Spool) handleDirect(ctx context.Context, a *sink.Alert) error {
	route, keep := s.routeFor(a)
	if !keep {
		s.log.Info("route: alert dropped by rule (outputs: none)", "id", a.ID, "device", a.Device, "rule", route.rule)
		s.decided(Decision{ID: a.ID, Dropped: true})
		return nil
	}
	s.decided(Decision{ID: a.ID, Outputs: route.Outputs})
	e := &entry{alert: a, route: route.Route, waiting: s.routed(route.Route), done: make(chan struct{})}
	if data, err := sink.JSON(ctx, a); err == nil {
		s.keepJSON(e, data)
	}
	s.mu.Lock()
	s.addPendingLocked(e)
	s.mu.Unlock()
	s.dispatch(e)
	select {
	case <-e.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return errors.Join(e.errs...)
	case <-ctx.Done():
		s.mu.Lock()
		e.abandoned = true
		s.mu.Unlock()
		return sink.MarkTemporary(fmt.Errorf("spool: outputs did not confirm %s in time: %w", a.ID, ctx.Err()))
	case <-s.ctx.Done():
		return sink.MarkTemporary(fmt.Errorf("spool: closing before %s was delivered", a.ID))
	}
}

// maxJSONHeld bounds the alerts' encodings the queue keeps for the outputs:
// plenty while alerts go out as they come, and no growth while a broker is
// away (alerts queued beyond it are encoded again when they go).
const maxJSONHeld = 1 << 20

// keepJSON keeps data as e's encoding if there is room.
func (s *Spool) keepJSON(e *entry, data []byte) {
	s.mu.Lock()
	if s.jsonHeld+len(data) <= maxJSONHeld {
		e.json = data
		s.jsonHeld += len(data)
	}
	s.mu.Unlock()
}

func (s *Spool) addPendingLocked(e *entry) {
	if len(s.pending) == 0 {
		s.idle = make(chan struct{})
	}
	s.pending[e.alert.ID] = e
	s.count++
	s.bytes += e.size
}

func (s *Spool) removePendingLocked(e *entry) {
	s.jsonHeld -= len(e.json)
	e.json = nil
	delete(s.pending, e.alert.ID)
	s.count--
	s.bytes -= e.size
	if len(s.pending) == 0 {
		close(s.idle)
	}
}

// dispatch queues e on every output, in the lane of its device, so alerts
// of one device are delivered in arrival order.
func (s *Spool) dispatch(e *entry) {
	lane := laneOf(e.alert.Device, s.cfg.Lanes)
	for i, out := range s.outputs {
		if e.route.includes(out.Name()) {
			s.lanes[i][lane].push(e)
		}
	}
}

// laneOf is the lane of a device's alerts among n.
func laneOf(device string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(device))
	return int(h.Sum32() % uint32(n))
}

// routed counts the outputs of this spool that are on route.
func (s *Spool) routed(route Route) int {
	n := 0
	for _, out := range s.outputs {
		if route.includes(out.Name()) {
			n++
		}
	}
	return n
}

// finished records that one output is done with e (delivered or dead); the
// last one removes the alert from the store.
func (s *Spool) finished(e *entry) {
	s.mu.Lock()
	e.waiting--
	last := e.waiting == 0
	if last && e.done != nil { // mode off: nothing stored to remove
		s.removePendingLocked(e)
		close(e.done)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if !last {
		return
	}
	if !e.dead && len(e.members) == 0 && e.onDone == nil && s.store.markDelivered(e.alert.ID) {
		// Marked removed where it lies, its file staying: one write,
		// done here rather than handed to the remover.
		s.mu.Lock()
		s.removePendingLocked(e)
		s.mu.Unlock()
		return
	}
	// The file goes in the background: on ext4 an unlink waits for the
	// journal commits that other mails' fsyncs keep starting, and delivery
	// must not queue behind that. Until it is gone, a crash means the alert
	// is delivered once more (at least once, same id).
	s.removals <- e
}

// remover deletes the files of delivered alerts and only then releases
// their room in the spool, so the caps count what is really on disk.
func (s *Spool) remover() {
	defer s.removersWG.Done()
	for e := range s.removals {
		s.mu.Lock()
		dead := e.dead
		s.mu.Unlock()
		// A follow-up's folded alerts go with it (dead with it, durably).
		for _, m := range append(e.members, e) {
			if err := s.store.remove(m.alert.ID, dead); err != nil {
				// The alert stays on disk and is delivered again after a restart.
				s.log.Error("spool: remove delivered alert", "id", m.alert.ID, "err", err)
			}
			s.mu.Lock()
			s.removePendingLocked(m)
			s.mu.Unlock()
		}
		if e.onDone != nil {
			e.onDone()
		}
	}
}

// Stats reports the queue as it stands. In disk mode the dead letters are
// counted in dead/ (a directory read); in memory mode they are those kept in
// RAM (the latest 100).
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := Stats{Queued: s.count, Bytes: s.bytes}
	for _, e := range s.pending {
		if t := e.alert.ReceivedAt; !t.IsZero() && (st.Oldest.IsZero() || t.Before(st.Oldest)) {
			st.Oldest = t
		}
	}
	s.mu.Unlock()
	switch store := s.store.(type) {
	case *memoryStore:
		st.Dead = len(store.deadLetters())
	case *diskStore:
		if items, err := List(s.cfg.Dir); err == nil {
			other := StatsOf(items)
			st.Dead, st.Held = other.Dead, other.Held
		}
	}
	return st
}

// DeadLetters returns the dead letters a memory spool keeps (the latest
// 100), oldest first; a disk spool's are in its directory (List).
func (s *Spool) DeadLetters() []DeadLetter {
	if m, ok := s.store.(*memoryStore); ok {
		return m.deadLetters()
	}
	return nil
}

// Len reports the alerts held and their size.
func (s *Spool) Len() (alerts int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.bytes
}

// Drain waits until every queued alert is delivered (or dead), or ctx ends.
// Open coalescing windows close at once: their follow-ups go out now.
func (s *Spool) Drain(ctx context.Context) error {
	s.co.flushAll()
	s.mu.Lock()
	idle := s.idle
	empty := len(s.pending) == 0
	s.mu.Unlock()
	if empty {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops delivering. Alerts not yet delivered stay in the store (in
// disk mode, for the next start). Safe to call twice.
func (s *Spool) Close() error {
	var err error
	s.closed.Do(func() {
		s.co.shut()
		s.cancel()
		s.wg.Wait() // no lane sends removals after this
		close(s.removals)
		s.removersWG.Wait()
		err = s.store.close()
	})
	if n, _ := s.Len(); n > 0 {
		switch s.cfg.Mode {
		case ModeDisk:
			s.log.Info("spool: alerts kept for the next start", "count", n)
		case ModeMemory:
			s.log.Warn("spool in memory: undelivered alerts lost at exit", "count", n)
		}
	}
	return err
}

// lane delivers entries to one output, one at a time, in order.
type lane struct {
	s    *Spool
	out  forward.Forwarder
	mu   sync.Mutex
	q    []*entry
	wake chan struct{}
}

func (l *lane) push(e *entry) {
	l.mu.Lock()
	l.q = append(l.q, e)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// window is how many alerts one lane may have in flight at an output that
// implements forward.Starter (others get one at a time).
const window = 64

// at returns the i-th entry from the head of the queue, or nil.
func (l *lane) at(i int) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.q) {
		return l.q[i]
	}
	return nil
}

func (l *lane) pop() {
	l.mu.Lock()
	l.q[0] = nil
	l.q = l.q[1:]
	l.mu.Unlock()
}

// flight is an alert started at the output, not yet confirmed.
type flight struct {
	e    *entry
	wait func(context.Context) error
}

// run delivers the lane's queue in order. With a Starter output it keeps a
// sliding window of alerts in flight, started in order, results taken in
// order; an alert that failed goes through deliver's retries before the next
// result is looked at, so only an alert that needed a retry can end up
// behind later ones. (The window slides rather than going batch by batch:
// waiting for a whole batch leaves the connection idle, and a broker without
// TCP_NODELAY, mosquitto's default, then holds its acknowledgements back for
// the client's delayed ACK, ~40 ms a batch.)
func (l *lane) run() {
	defer l.s.wg.Done()
	var inflight []flight
	for {
		for len(inflight) < window {
			e := l.at(len(inflight))
			if e == nil {
				break
			}
			inflight = append(inflight, flight{e: e, wait: l.start(e)})
		}
		if len(inflight) == 0 {
			select {
			case <-l.wake:
				continue
			case <-l.s.ctx.Done():
				return
			}
		}
		f := inflight[0]
		ctx, cancel := context.WithTimeout(l.s.ctx, l.s.cfg.DeliverTimeout)
		err := f.wait(ctx)
		cancel()
		if err != nil && !l.deliver(f.e, err) {
			return // closing; the rest stays stored
		}
		inflight[0] = flight{}
		inflight = inflight[1:]
		l.pop()
		l.s.finished(f.e)
	}
}

// errAbandoned stands for the delivery of an alert that no one waits for
// any more (mode off: Handle timed out and the device will send it again).
var errAbandoned = errors.New("spool: abandoned")

// start begins delivering e: pipelined when the output can, else the
// delivery happens when the returned function is called.
func (l *lane) start(e *entry) (wait func(context.Context) error) {
	a := e.alert
	if l.s.cfg.Mode == ModeOff {
		l.s.mu.Lock()
		abandoned := e.abandoned
		l.s.mu.Unlock()
		if abandoned {
			return func(context.Context) error { return errAbandoned }
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("%s: panic: %v", l.out.Name(), r)
			wait = func(context.Context) error { return err }
		}
	}()
	out := l.outFor(e)
	l.s.mu.Lock()
	data := e.json
	l.s.mu.Unlock()
	ctx := l.s.ctx
	if data != nil {
		ctx = sink.WithJSON(ctx, a, data)
	}
	if st, ok := out.(forward.Starter); ok {
		return st.Start(ctx, a)
	}
	return func(wctx context.Context) error {
		if data != nil {
			wctx = sink.WithJSON(wctx, a, data)
		}
		return l.forward(wctx, out, a)
	}
}

// deliver retries e, whose first attempt failed with err, until the output
// confirms it or gives up on it for good. It returns false only when the
// spool is closing. In mode off there is no retry: the error goes to the
// Handle waiting for e, and the device retries.
func (l *lane) deliver(e *entry, err error) bool {
	s := l.s
	if s.cfg.Mode == ModeOff {
		if !errors.Is(err, errAbandoned) {
			s.log.Warn("output failed", "output", l.out.Name(), "id", e.alert.ID, "temporary", sink.Temporary(err), "err", err)
			s.mu.Lock()
			e.errs = append(e.errs, fmt.Errorf("%s: %w", l.out.Name(), err))
			s.mu.Unlock()
		}
		return true
	}
	backoff := s.cfg.RetryMin
	refusals := 0
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DeliverTimeout)
			err = l.forward(ctx, l.outFor(e), e.alert)
			cancel()
		}
		if err == nil {
			if attempt > 1 {
				s.log.Info("spool: delivered after retries", "output", l.out.Name(), "id", e.alert.ID, "attempts", attempt)
			}
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		if !sink.Temporary(err) {
			refusals++
			if refusals >= s.cfg.MaxAttempts {
				return l.deadLetter(e, err, attempt)
			}
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("spool: delivery failed, will retry", "output", l.out.Name(), "id", e.alert.ID,
				"attempt", attempt, "temporary", sink.Temporary(err), "next_in", backoff, "err", err)
		}
		// Full jitter keeps many lanes from retrying in step after an outage.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return false
		}
		backoff = min(backoff*2, s.cfg.RetryMax)
	}
}

func (l *lane) forward(ctx context.Context, out forward.Forwarder, a *sink.Alert) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: panic: %v", l.out.Name(), r)
		}
	}()
	return out.Forward(ctx, a)
}

// deadLetter sets e aside for good: the output refused it attempts times.
// Until the dead letter is on disk the alert stays queued, so an alert a
// device had its 250 for is never dropped: a failed write is logged and
// tried again with backoff. It returns false only when the spool is closing
// (the alert is then still in the queue for the next start).
func (l *lane) deadLetter(e *entry, cause error, attempts int) bool {
	s := l.s
	d := DeadLetter{Alert: e.alert, Output: l.out.Name(), Reason: cause.Error(), Attempts: attempts, At: time.Now().UTC()}
	backoff := s.cfg.RetryMin
	for try := 1; ; try++ {
		err := s.store.dead(d)
		if err == nil {
			break
		}
		s.log.Error("spool: cannot write dead letter; the alert stays queued and the write is tried again",
			"output", l.out.Name(), "id", e.alert.ID, "device", e.alert.Device, "try", try, "next_in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return false
		}
		backoff = min(backoff*2, s.cfg.RetryMax)
	}
	s.mu.Lock()
	e.dead = true
	s.mu.Unlock()
	if s.onDead != nil {
		s.onDead(d)
	}
	s.log.Error("spool: output keeps refusing alert, moved to dead letters", "output", l.out.Name(),
		"id", e.alert.ID, "device", e.alert.Device, "attempts", attempts, "reason", cause)
	return true
}

// DeadLetter is an alert an output refused for good, with why.
type DeadLetter struct {
	Version  int         `json:"v"`
	Alert    *sink.Alert `json:"alert"`
	Output   string      `json:"output"`
	Reason   string      `json:"reason"`
	Attempts int         `json:"attempts"`
	At       time.Time   `json:"at"`
}
