package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink"
)

// Recorder watches alerts go by: as a stage before the queue (Handler) it
// sees each accepted alert and its raw mail, wrapped around each output
// (Output) it sees every delivery, and told by the spool (DeadLetter) it
// sees alerts die. It keeps what the page shows (recent alerts, devices
// seen, raw mails) and the metrics' counters, all bounded, in RAM.
type Recorder struct {
	cfg     Config
	metrics *Metrics
	raw     *rawStore

	mu       sync.Mutex
	recent   []*alertView // newest last, at most cfg.RecentAlerts
	byID     map[string]*alertView
	devices  map[string]*DeviceInfo
	outputs  []string
	health   map[string]*outputHealth
	onChange func()
}

// alertView is one recent alert and where each output stands with it.
type alertView struct {
	alert      *sink.Alert
	json       []byte // compact; indentJSON for the page
	deliveries map[string]*Delivery
}

// Delivery is where one output stands with one alert.
type Delivery struct {
	Output string
	State  string    // pending, delivered, retrying, dead
	Since  time.Time // first failure while retrying; when it ended otherwise
	Error  string
}

// outputHealth is what the deliveries say about an output: failing since
// when (zero while the last delivery went through).
type outputHealth struct {
	failingSince time.Time
	lastError    string
}

// DeviceInfo is one device as the page lists it.
type DeviceInfo struct {
	Name      string
	Template  string // the device template that classified its last alert
	LastEvent string // e.g. "motion start"
	LastAt    time.Time
	Today     int    // alerts since local midnight
	Snapshot  string // URL of its latest snapshot thumbnail, "" if none
	day       string
}

// Devices lists the devices the page shows. The device registry (the same
// one Home Assistant discovery reads) implements it; without one the
// Recorder lists the devices it saw.
type Devices interface {
	Devices() []DeviceInfo
}

// maxDevices bounds the devices a Recorder remembers.
const maxDevices = 256

// NewRecorder returns a Recorder for cfg's bounds.
func NewRecorder(cfg Config) *Recorder {
	cfg = cfg.withDefaults()
	return &Recorder{
		cfg:     cfg,
		metrics: newMetrics(),
		raw:     newRawStore(cfg.RawMemory, cfg.RawRing),
		byID:    map[string]*alertView{},
		devices: map[string]*DeviceInfo{},
		health:  map[string]*outputHealth{},
	}
}

// Metrics is the counters the Recorder keeps; it is also the SMTP server's
// observer (smtpd.Observer).
func (r *Recorder) Metrics() *Metrics { return r.metrics }

// SetSpoolDir tells where dead letters live on disk ("" for a memory
// spool): their raw mail is written beside them.
func (r *Recorder) SetSpoolDir(dir string) { r.raw.setDir(dir) }

func (r *Recorder) setOnChange(f func()) {
	r.mu.Lock()
	r.onChange = f
	r.mu.Unlock()
}

func (r *Recorder) changed() {
	r.mu.Lock()
	f := r.onChange
	r.mu.Unlock()
	if f != nil {
		f()
	}
}

// Handler returns the stage that records each alert next accepts. The
// alert is listed before next sees it (the queue may deliver it before
// Handle returns) and taken off again if next refuses it.
func (r *Recorder) Handler(next sink.Handler) sink.Handler {
	return sink.HandlerFunc(func(ctx context.Context, a *sink.Alert) error {
		raw := sink.RawMail(ctx)
		data, _ := sink.JSON(ctx, a)
		ctx = sink.WithJSON(ctx, a, data) // for the queue and the outputs
		r.begin(a, raw, data)
		if err := next.Handle(ctx, a); err != nil {
			r.abort(a.ID)
			return err
		}
		r.accepted(a)
		return nil
	})
}

// begin lists an alert about to be queued.
// data is its JSON, compact; indented only when the page is drawn
// (json.Indent of it is what MarshalIndent would have given).
func (r *Recorder) begin(a *sink.Alert, raw, data []byte) {
	if raw != nil {
		r.raw.put(a.ID, raw)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	v := &alertView{alert: a, json: data, deliveries: map[string]*Delivery{}}
	for _, o := range r.outputs {
		v.deliveries[o] = &Delivery{Output: o, State: "pending", Since: now}
	}
	if old, dup := r.byID[a.ID]; dup { // put back: listed again, at the end
		r.removeLocked(old)
	}
	r.recent = append(r.recent, v)
	r.byID[a.ID] = v
	for len(r.recent) > r.cfg.RecentAlerts {
		r.removeLocked(r.recent[0])
	}
}

// Decided is the queue's decision for an alert (spool.OnDecided): only the
// outputs of its route wait for it; one a rule dropped, or one folded into
// its storm's follow-up, says so instead of waiting for ever.
func (r *Recorder) Decided(d spool.Decision) {
	if d.Dropped {
		r.raw.forget(d.ID)
	}
	r.mu.Lock()
	v := r.byID[d.ID]
	if v == nil {
		r.mu.Unlock()
		return
	}
	now := time.Now()
	for name, dl := range v.deliveries {
		switch {
		case d.Dropped:
			dl.State, dl.Since = "dropped by rule", now
		case len(d.Outputs) > 0 && !slices.Contains(d.Outputs, name):
			delete(v.deliveries, name)
		case d.Folded:
			dl.State, dl.Since = "folded", now
		}
	}
	r.mu.Unlock()
	r.changed()
}

// abort takes off an alert the queue refused (the device was told to
// retry, or that it failed).
func (r *Recorder) abort(id string) {
	r.raw.forget(id)
	r.mu.Lock()
	if v := r.byID[id]; v != nil {
		r.removeLocked(v)
	}
	r.mu.Unlock()
}

// accepted counts an alert the queue took.
func (r *Recorder) accepted(a *sink.Alert) {
	r.metrics.alert(eventLabel(a.Event))
	r.mu.Lock()
	r.seenLocked(a, time.Now())
	r.mu.Unlock()
	r.changed()
}

func (r *Recorder) removeLocked(v *alertView) {
	for i, x := range r.recent {
		if x == v {
			r.recent = append(r.recent[:i], r.recent[i+1:]...)
			break
		}
	}
	delete(r.byID, v.alert.ID)
}

// seenLocked updates the device an alert came from.
func (r *Recorder) seenLocked(a *sink.Alert, now time.Time) {
	d, ok := r.devices[a.Device]
	if !ok {
		if len(r.devices) >= maxDevices {
			r.forgetOldestDeviceLocked()
		}
		d = &DeviceInfo{Name: a.Device}
		r.devices[a.Device] = d
	}
	today := now.Local().Format(time.DateOnly)
	if d.day != today {
		d.day, d.Today = today, 0
	}
	d.Today++
	d.LastAt = a.ReceivedAt
	if d.LastAt.IsZero() {
		d.LastAt = now
	}
	d.LastEvent, d.Template = "", ""
	if e := a.Event; e != nil {
		d.LastEvent = e.Type
		if e.State != "" && e.State != "none" {
			d.LastEvent += " " + e.State
		}
		d.Template = e.Template
	}
}

func (r *Recorder) forgetOldestDeviceLocked() {
	var oldest *DeviceInfo
	for _, d := range r.devices {
		if oldest == nil || d.LastAt.Before(oldest.LastAt) {
			oldest = d
		}
	}
	if oldest != nil {
		delete(r.devices, oldest.Name)
	}
}

// Devices lists the devices seen, most recent first.
func (r *Recorder) Devices() []DeviceInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	today := time.Now().Local().Format(time.DateOnly)
	out := make([]DeviceInfo, 0, len(r.devices))
	for _, d := range r.devices {
		c := *d
		if c.day != today {
			c.Today = 0
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastAt.After(out[j].LastAt) })
	return out
}

// Output wraps an output so every delivery to it is recorded. The wrapper
// keeps the output's optional interfaces (forward.Starter).
func (r *Recorder) Output(f forward.Forwarder) forward.Forwarder {
	r.mu.Lock()
	r.outputs = append(r.outputs, f.Name())
	r.health[f.Name()] = &outputHealth{}
	r.mu.Unlock()
	w := watched{Forwarder: f, r: r}
	if st, ok := f.(forward.Starter); ok {
		return watchedStarter{watched: w, st: st}
	}
	return w
}

type watched struct {
	forward.Forwarder
	r *Recorder
}

func (w watched) Forward(ctx context.Context, a *sink.Alert) error {
	start := time.Now()
	err := w.Forwarder.Forward(ctx, a)
	w.r.delivery(w.Name(), a, time.Since(start), err)
	return err
}

// With passes a routing rule's template on to the output (forward.Templated)
// and watches what it returns the same way; an output without templates is
// itself, as the spool's fallback would have it.
func (w watched) With(tmpl string) (forward.Forwarder, error) {
	t, ok := w.Forwarder.(forward.Templated)
	if !ok {
		return w.r.Output(w.Forwarder), nil
	}
	f, err := t.With(tmpl)
	if err != nil {
		return nil, err
	}
	return w.r.Output(f), nil
}

var _ forward.Templated = watched{}

type watchedStarter struct {
	watched
	st forward.Starter
}

func (w watchedStarter) Start(ctx context.Context, a *sink.Alert) func(context.Context) error {
	start := time.Now()
	wait := w.st.Start(ctx, a)
	return func(ctx context.Context) error {
		err := wait(ctx)
		w.r.delivery(w.Name(), a, time.Since(start), err)
		return err
	}
}

// delivery records one attempt to deliver a to output.
func (r *Recorder) delivery(output string, a *sink.Alert, took time.Duration, err error) {
	if err != nil && errors.Is(err, context.Canceled) {
		return // edgesink is stopping: not the output's doing
	}
	r.metrics.delivery(output, err, took)
	now := time.Now()
	finished := false
	r.mu.Lock()
	if h := r.health[output]; h != nil {
		if err == nil {
			h.failingSince = time.Time{}
		} else {
			if h.failingSince.IsZero() {
				h.failingSince = now
			}
			h.lastError = err.Error()
		}
	}
	if v := r.byID[a.ID]; v != nil {
		d := v.deliveries[output]
		if d == nil {
			d = &Delivery{Output: output}
			v.deliveries[output] = d
		}
		if err == nil {
			d.State, d.Since, d.Error = "delivered", now, ""
		} else if d.State != "retrying" {
			d.State, d.Since, d.Error = "retrying", now, err.Error()
		} else {
			d.Error = err.Error()
		}
		finished = v.settledLocked()
	}
	r.mu.Unlock()
	if finished {
		r.raw.settled(a.ID)
	}
	r.changed()
}

// settledLocked tells whether every output is done with the alert.
func (v *alertView) settledLocked() bool {
	for _, d := range v.deliveries {
		if d.State != "delivered" && d.State != "dead" {
			return false
		}
	}
	return true
}

// DeadLetter records that an output gave up on an alert; it is the spool's
// OnDeadLetter callback. The alert's raw mail, if held, is written beside
// the dead letter (or kept in RAM for a memory spool).
func (r *Recorder) DeadLetter(d spool.DeadLetter) {
	r.metrics.dead(d.Output)
	r.raw.dead(d.Alert.ID)
	r.mu.Lock()
	if v := r.byID[d.Alert.ID]; v != nil {
		v.deliveries[d.Output] = &Delivery{Output: d.Output, State: "dead", Since: d.At, Error: d.Reason}
	}
	r.mu.Unlock()
	r.changed()
}

// Raw returns the raw mail of alert id, if it is held: in RAM (queued, a
// memory spool's dead letter, the ring) or beside a disk dead letter.
func (r *Recorder) Raw(id string) ([]byte, bool) { return r.raw.get(id) }

// Alert returns a recent alert by id.
func (r *Recorder) Alert(id string) (*sink.Alert, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.byID[id]
	if !ok {
		return nil, false
	}
	return v.alert, true
}

// AlertRow is one recent alert as the page lists it.
type AlertRow struct {
	ID         string
	At         time.Time
	Device     string
	Event      string
	Subject    string
	ReplayOf   string
	JSON       string
	Deliveries []Delivery
	HasRaw     bool
}

// recentAlerts lists the recent alerts, newest first.
func (r *Recorder) recentAlerts() []AlertRow {
	r.mu.Lock()
	rows := make([]AlertRow, 0, len(r.recent))
	for i := len(r.recent) - 1; i >= 0; i-- {
		v := r.recent[i]
		a := v.alert
		row := AlertRow{ID: a.ID, At: a.ReceivedAt, Device: a.Device, Subject: a.Subject, ReplayOf: a.ReplayOf, JSON: indentJSON(v.json)}
		if a.Event != nil {
			row.Event = a.Event.Type
			if a.Event.State != "" && a.Event.State != "none" {
				row.Event += " " + a.Event.State
			}
		}
		for _, o := range r.outputs {
			if d := v.deliveries[o]; d != nil {
				row.Deliveries = append(row.Deliveries, *d)
			}
		}
		rows = append(rows, row)
	}
	r.mu.Unlock()
	for i := range rows {
		rows[i].HasRaw = r.raw.has(rows[i].ID)
	}
	return rows
}

// failing tells since when output's deliveries fail (zero: they do not)
// and the last error.
func (r *Recorder) failing(output string) (time.Time, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.health[output]; h != nil {
		return h.failingSince, h.lastError
	}
	return time.Time{}, ""
}

// rawStore holds raw mails: of alerts still queued (until every output is
// done with them), bounded by bytes, oldest dropped first; the last N in a
// ring when asked for; and it writes a dead letter's beside it.
type rawStore struct {
	max  int64
	ring int

	mu     sync.Mutex
	dir    string // disk spool directory; "" keeps dead letters' raw mail in RAM
	used   int64
	order  []string // ids, oldest first
	mails  map[string]*rawMail
	inRing []string // ids kept by the ring, oldest first
}

type rawMail struct {
	data    []byte
	settled bool // every output is done: kept only for the ring
	dead    bool // a dead letter's, kept in RAM (memory spool)
}

// maxDeadInRAM bounds the raw mails of a memory spool's dead letters.
const maxDeadInRAM = 100

func newRawStore(max int64, ring int) *rawStore {
	return &rawStore{max: max, ring: ring, mails: map[string]*rawMail{}}
}

func (s *rawStore) setDir(dir string) {
	s.mu.Lock()
	s.dir = dir
	s.mu.Unlock()
}

func (s *rawStore) put(id string, raw []byte) {
	if int64(len(raw)) > s.max {
		return
	}
	data := append([]byte(nil), raw...) // exactly its size: the budget counts what is held
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.mails[id]; ok {
		s.used -= int64(len(old.data))
		s.dropOrderLocked(id)
	}
	s.mails[id] = &rawMail{data: data}
	s.order = append(s.order, id)
	s.used += int64(len(data))
	for s.used > s.max && len(s.order) > 0 {
		s.removeLocked(s.order[0])
	}
}

func (s *rawStore) dropOrderLocked(id string) {
	for i, x := range s.order {
		if x == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			return
		}
	}
}

func (s *rawStore) removeLocked(id string) {
	m, ok := s.mails[id]
	if !ok {
		return
	}
	s.used -= int64(len(m.data))
	delete(s.mails, id)
	s.dropOrderLocked(id)
	for i, x := range s.inRing {
		if x == id {
			s.inRing = append(s.inRing[:i], s.inRing[i+1:]...)
			break
		}
	}
}

// settled: every output is done with id; its raw mail stays only if the
// ring keeps it.
func (s *rawStore) settled(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.mails[id]
	if !ok || m.dead || m.settled {
		return
	}
	if s.ring == 0 {
		s.removeLocked(id)
		return
	}
	m.settled = true
	s.inRing = append(s.inRing, id)
	for len(s.inRing) > s.ring {
		s.removeLocked(s.inRing[0])
	}
}

// dead: id became a dead letter; its raw mail goes to disk beside it (not
// fsynced: best-effort data), or stays in RAM for a memory spool.
func (s *rawStore) dead(id string) {
	s.mu.Lock()
	m, ok := s.mails[id]
	dir := s.dir
	if !ok {
		s.mu.Unlock()
		return
	}
	if dir != "" {
		s.removeLocked(id)
		s.mu.Unlock()
		_ = os.WriteFile(spool.RawPath(dir, id), m.data, 0o600)
		return
	}
	m.dead = true
	deadCount := 0
	for _, x := range s.mails {
		if x.dead {
			deadCount++
		}
	}
	if deadCount > maxDeadInRAM {
		for _, x := range s.order {
			if s.mails[x].dead {
				s.removeLocked(x)
				break
			}
		}
	}
	s.mu.Unlock()
}

func (s *rawStore) has(id string) bool {
	s.mu.Lock()
	_, ok := s.mails[id]
	dir := s.dir
	s.mu.Unlock()
	if ok {
		return true
	}
	if dir == "" || !spool.ValidID(id) {
		return false
	}
	_, err := os.Stat(spool.RawPath(dir, id))
	return err == nil
}

func (s *rawStore) get(id string) ([]byte, bool) {
	s.mu.Lock()
	m, ok := s.mails[id]
	dir := s.dir
	s.mu.Unlock()
	if ok {
		return m.data, true
	}
	if dir == "" || !spool.ValidID(id) {
		return nil, false
	}
	data, err := os.ReadFile(spool.RawPath(dir, id))
	return data, err == nil
}

// forget drops id's raw mail from RAM (a dropped dead letter).
func (s *rawStore) forget(id string) {
	s.mu.Lock()
	s.removeLocked(id)
	s.mu.Unlock()
}

// requeued: dead letter id is queued again. A raw mail kept beside it on
// disk comes back to RAM, as for any queued alert (written again if it
// dies again), so it is not left behind once the alert is delivered.
func (s *rawStore) requeued(id string) {
	s.mu.Lock()
	dir := s.dir
	s.mu.Unlock()
	if dir == "" || !spool.ValidID(id) {
		return
	}
	path := spool.RawPath(dir, id)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	s.put(id, data)
	_ = os.Remove(path)
}

// indentJSON is compact JSON as json.MarshalIndent(v, "", "  ") writes it.
func indentJSON(compact []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, compact, "", "  "); err != nil {
		return string(compact)
	}
	return b.String()
}
