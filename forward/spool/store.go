package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/edgesink/edgesink/sink"
)

// store is where queued alerts live between Handle and delivery.
type store interface {
	put(ctx context.Context, id string, data []byte) error // durable when it returns nil
	remove(id string, durably bool) error                  // durably: the removal is fsynced too
	dead(d DeadLetter) error
	load(onCorrupt func(id, reason string)) ([]stored, error) // oldest first
	close() error
}

type stored struct {
	alert  *sink.Alert
	route  Route
	size   int64
	folded bool
}

// Layout of a disk spool.
const (
	queueDir = "queue"
	deadDir  = "dead"
	tmpExt   = ".tmp"
	jsonExt  = ".json"  // one alert: dead letters, and alerts put back by 'spool retry'
	heldExt  = ".held"  // in dead/: a queue file the service could not read
	batchExt = ".jsonl" // alerts stored together, one JSON object a line
)

// Group commit bounds: how much one batch file may take.
const (
	maxBatch      = 256
	maxBatchBytes = 4 << 20
)

// diskStore keeps queued alerts in batch files in queue/: a single
// committer writes all alerts that arrived while the previous write was
// under way into one file, fsyncs it and the directory once, and only then
// lets their senders have their 250. Under load that is one fsync for many
// mails; alone, one for one. A batch file is deleted when every alert in it
// is delivered. Dead letters are one file each in dead/.
type diskStore struct {
	dir       string
	queue     *os.File                                    // kept open to fsync the directory
	onPartial func(id string)                             // told of truncated files removed at start
	onHeld    func(name, to string, cause, moveErr error) // told of unreadable queue files set aside
	reqs      chan *putRequest                            // to the committer
	done      chan struct{}                               // closed when the committers have exited

	committers sync.WaitGroup

	closeMu sync.RWMutex // put holds it shared while sending; close exclusively
	closed  bool

	mu      sync.Mutex
	batchOf map[string]string // alert id -> file in queue/ holding it
	refs    map[string]int    // file in queue/ -> alerts in it not yet removed
	durable map[string]bool   // file in queue/ -> its removal must be fsynced
}

type putRequest struct {
	id    string
	data  []byte
	res   chan error
	batch *batch // set when a committer takes it; guarded by diskStore.mu
	late  bool   // its put gave up waiting before a committer took it
}

// batch is the fate of the requests written together. A put that gives up
// waiting (its ctx ended: the device is told 451 and sends the mail again)
// abandons its whole batch: every put in it fails, and the file, should the
// write still complete, is removed, so the resent mail is not a second copy.
type batch struct {
	abandoned bool // a put gave up on it
	settled   bool // the committer decided its outcome; too late to abandon
}

func openDiskStore(dir string) (*diskStore, error) {
	for _, d := range []string{filepath.Join(dir, queueDir), filepath.Join(dir, deadDir)} {
		if err := mkdirAllSync(d); err != nil {
			return nil, fmt.Errorf("spool: create %s: %w", d, err)
		}
	}
	q, err := os.Open(filepath.Join(dir, queueDir))
	if err != nil {
		return nil, fmt.Errorf("spool: open queue: %w", err)
	}
	d := &diskStore{dir: dir, queue: q, onPartial: func(string) {}, onHeld: func(string, string, error, error) {},
		reqs: make(chan *putRequest, maxBatch), done: make(chan struct{}),
		batchOf: make(map[string]string), refs: make(map[string]int), durable: make(map[string]bool)}
	d.committers.Add(committers)
	for range committers {
		go d.committer()
	}
	go func() { d.committers.Wait(); close(d.done) }()
	return d, nil
}

// put returns nil once data is durable: in a batch file that is fsynced, as
// is the directory holding it. When ctx ends first (a disk that hangs), it
// fails with sink.ErrStorageFailed and the alert is not kept.
func (d *diskStore) put(ctx context.Context, id string, data []byte) error {
	r := &putRequest{id: id, data: data, res: make(chan error, 1)}
	d.closeMu.RLock()
	if d.closed {
		d.closeMu.RUnlock()
		return sink.MarkTemporary(errors.New("spool: closed"))
	}
	d.reqs <- r
	d.closeMu.RUnlock()
	select {
	case err := <-r.res:
		return err
	case <-ctx.Done():
	}
	d.mu.Lock()
	if r.batch != nil && r.batch.settled {
		d.mu.Unlock()
		return <-r.res // decided meanwhile: its outcome stands
	}
	r.late = true
	if r.batch != nil {
		r.batch.abandoned = true
	}
	d.mu.Unlock()
	return storeError(fmt.Errorf("spool: write %s did not finish in time: %w", id, ctx.Err()))
}

// errBatchAbandoned answers the puts of a batch another put gave up on.
var errBatchAbandoned = errors.New("spool: a write in the same batch did not finish in time")

// committers is how many batches may be on their way to disk at once.
// One: measured with 20 senders (make bench), a second committer splits the
// waiting mails into two smaller batches and halves throughput.
const committers = 1

// committer is one of the store's goroutines; close stops them.
func (d *diskStore) committer() {
	defer d.committers.Done()
	for first := range d.reqs {
		reqs, size := []*putRequest{first}, len(first.data)
	collect:
		for len(reqs) < maxBatch && size < maxBatchBytes {
			select {
			case r, ok := <-d.reqs:
				if !ok {
					break collect
				}
				reqs, size = append(reqs, r), size+len(r.data)
			default:
				break collect
			}
		}
		b := &batch{}
		d.mu.Lock()
		kept := reqs[:0]
		for _, r := range reqs {
			if !r.late { // a put that gave up before now: its device resends
				r.batch = b
				kept = append(kept, r)
			}
		}
		d.mu.Unlock()
		if len(kept) == 0 {
			continue
		}
		name, err := d.writeBatch(kept)
		d.mu.Lock()
		b.settled = true
		abandoned := b.abandoned && err == nil
		d.mu.Unlock()
		if abandoned {
			d.forget(name, kept)
			err = storeError(errBatchAbandoned)
		}
		for _, r := range kept {
			r.res <- err
		}
	}
}

// forget removes a batch file written too late to count: no device had its
// 250 for it.
func (d *diskStore) forget(name string, reqs []*putRequest) {
	d.mu.Lock()
	for _, r := range reqs {
		delete(d.batchOf, r.id)
	}
	delete(d.refs, name)
	d.mu.Unlock()
	if err := os.Remove(filepath.Join(d.dir, queueDir, name)); err == nil {
		_ = d.queue.Sync()
	}
}

// writeBatch writes the batch under its final name, fsyncs file and
// directory. A crash mid-write leaves a file without its final newline,
// which load recognises: none of its mails was acknowledged.
func (d *diskStore) writeBatch(batch []*putRequest) (string, error) {
	name := batch[0].id + batchExt
	path := filepath.Join(d.dir, queueDir, name)
	var buf []byte
	for _, r := range batch {
		buf = append(append(buf, r.data...), '\n')
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return name, storeError(fmt.Errorf("spool: create %s: %w", name, err))
	}
	err = writeSyncClose(f, buf)
	if err == nil {
		err = d.queue.Sync()
	}
	if err != nil {
		_ = os.Remove(path)
		return name, storeError(fmt.Errorf("spool: write %s: %w", name, err))
	}
	d.mu.Lock()
	for _, r := range batch {
		d.batchOf[r.id] = name
	}
	d.refs[name] = len(batch)
	d.mu.Unlock()
	return name, nil
}

// writeSyncClose writes data to f, fsyncs and closes it.
func writeSyncClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileSync writes path atomically and durably: a temporary file,
// fsynced, renamed into place, and the directory fsynced. Run as root (sudo
// edgesink spool retry), the file is given to the directory's owner first,
// so the service, which runs as that owner, can read it.
func writeFileSync(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+tmpExt)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err = giveToDirOwner(f, filepath.Dir(path)); err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return err
	}
	err = writeSyncClose(f, data)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// storeError turns a full disk into sink.ErrStorageFull (452 4.3.1) and any
// other I/O failure into sink.ErrStorageFailed (451 4.3.0): the device keeps
// the mail and retries.
func storeError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", sink.ErrStorageFull, err)
	}
	return sink.MarkTemporary(fmt.Errorf("%w: %w", sink.ErrStorageFailed, err))
}

func (d *diskStore) close() error {
	d.closeMu.Lock()
	if !d.closed {
		d.closed = true
		close(d.reqs)
	}
	d.closeMu.Unlock()
	<-d.done
	return d.queue.Close()
}

// remove forgets a delivered alert; the file holding it goes when it holds
// nothing else. A delivered alert's removal is not fsynced (a power cut
// before the next fsync of the directory means it is delivered once more,
// which at least once allows); a dead letter's is (durably), or the alert
// would come back from the dead at the next start.
func (d *diskStore) remove(id string, durably bool) error {
	d.mu.Lock()
	name, ok := d.batchOf[id]
	if !ok {
		d.mu.Unlock()
		return nil
	}
	delete(d.batchOf, id)
	d.refs[name]--
	if durably {
		d.durable[name] = true
	}
	last := d.refs[name] <= 0
	durably = d.durable[name]
	if last {
		delete(d.refs, name)
		delete(d.durable, name)
	}
	d.mu.Unlock()
	if !last {
		return nil
	}
	err := os.Remove(filepath.Join(d.dir, queueDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil && durably {
		err = d.queue.Sync()
	}
	return err
}

// holdAside moves a queue file this process cannot read to dead/NAME.held,
// where 'edgesink spool list' shows it and 'spool retry' puts it back.
func (d *diskStore) holdAside(name string, cause error) {
	to := filepath.Join(d.dir, deadDir, name+heldExt)
	err := os.Rename(filepath.Join(d.dir, queueDir, name), to)
	if err == nil {
		err = syncDir(filepath.Join(d.dir, deadDir))
	}
	if err == nil {
		err = d.queue.Sync()
	}
	d.onHeld(name, to, cause, err)
}

func (d *diskStore) dead(dl DeadLetter) error {
	data, err := encodeDeadLetter(dl)
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, deadDir, dl.Alert.ID+"."+sink.SafeName(dl.Output)+jsonExt)
	return writeFileSync(path, data)
}

// mkdirAllSync is os.MkdirAll made durable: each directory it creates is
// fsynced into its parent, so a first-boot alert does not vanish with its
// directory at the first power cut.
func mkdirAllSync(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// load removes what a crash cut short (its mails were never acknowledged)
// and returns the queued alerts, oldest first. Unreadable alerts are set
// aside in dead/ with a note.
func (d *diskStore) load(onCorrupt func(id, reason string)) ([]stored, error) {
	return d.read(true, onCorrupt)
}

// scan returns alerts put back into the queue (single-alert files) since
// the store was opened; batch files are only ever written by this store.
func (d *diskStore) scan() ([]stored, error) {
	return d.read(false, func(string, string) {})
}

func (d *diskStore) read(atStart bool, onCorrupt func(id, reason string)) ([]stored, error) {
	qdir := filepath.Join(d.dir, queueDir)
	entries, err := os.ReadDir(qdir)
	if err != nil {
		return nil, fmt.Errorf("spool: read queue: %w", err)
	}
	var out []stored
	for _, de := range entries {
		name := de.Name()
		path := filepath.Join(qdir, name)
		if de.IsDir() {
			continue
		}
		if strings.HasSuffix(name, tmpExt) {
			if atStart {
				_ = os.Remove(path) // a 'spool retry' cut short
			}
			continue
		}
		isBatch := strings.HasSuffix(name, batchExt)
		if !isBatch && !strings.HasSuffix(name, jsonExt) {
			continue
		}
		d.mu.Lock()
		_, known := d.refs[name]
		d.mu.Unlock()
		if known || (!atStart && isBatch) {
			continue
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			// Typically a file root wrote with an old 'sudo edgesink spool
			// retry': fatal here, it would keep the service from starting.
			d.holdAside(name, err)
			continue
		}
		lines, complete := recordLines(data)
		if isBatch && !complete {
			if atStart {
				// Cut short by a crash before its fsync finished: no device
				// got a 250 for it, and they still have the mails.
				_ = os.Remove(path)
				d.onPartial(name)
			}
			continue
		}
		var alerts []stored
		for i, line := range lines {
			rec, err := decodeRecord(line)
			if err != nil {
				if !atStart {
					return nil, nil // being written; look again later
				}
				id := fmt.Sprintf("%s-%d", strings.TrimSuffix(strings.TrimSuffix(name, batchExt), jsonExt), i)
				_ = writeFileSync(filepath.Join(d.dir, deadDir, id+".corrupt"), line)
				onCorrupt(id, fmt.Sprintf("unreadable alert in %s: %v", name, err))
				continue
			}
			alerts = append(alerts, stored{alert: rec.Alert, route: rec.Route, size: int64(len(line)), folded: rec.Folded})
		}
		if len(alerts) == 0 {
			_ = os.Remove(path)
			continue
		}
		d.mu.Lock()
		for _, s := range alerts {
			d.batchOf[s.alert.ID] = name
		}
		d.refs[name] += len(alerts)
		d.mu.Unlock()
		out = append(out, alerts...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].alert.ID < out[j].alert.ID })
	return out, nil
}

// memoryStore keeps nothing on disk: queued alerts live only in the
// Spool's lanes; the latest dead letters (at most maxMemoryDead) in RAM.
type memoryStore struct {
	mu      sync.Mutex
	letters []DeadLetter
}

// maxMemoryDead bounds the dead letters a memory spool keeps; older ones go.
const maxMemoryDead = 100

func newMemoryStore() *memoryStore                                 { return &memoryStore{} }
func (m *memoryStore) put(context.Context, string, []byte) error   { return nil }
func (m *memoryStore) remove(string, bool) error                   { return nil }
func (m *memoryStore) close() error                                { return nil }
func (m *memoryStore) load(func(string, string)) ([]stored, error) { return nil, nil }

func (m *memoryStore) dead(d DeadLetter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.letters) >= maxMemoryDead {
		m.letters = append(m.letters[:0], m.letters[1:]...)
	}
	m.letters = append(m.letters, d)
	return nil
}

func (m *memoryStore) deadLetters() []DeadLetter {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.letters)
}
