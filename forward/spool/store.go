package spool

import (
	"bytes"
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
	"time"

	"github.com/edgesink/edgesink/sink"
)

// store is where queued alerts live between Handle and delivery.
type store interface {
	put(ctx context.Context, id string, record ...[]byte) error // durable when it returns nil; record in parts
	remove(id string, durably bool) error                       // durably: the removal is fsynced too
	markDelivered(id string) bool                               // remove, when that is one write and not a file to delete
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
	queueDir   = "queue"
	deadDir    = "dead"
	tmpExt     = ".tmp"
	jsonExt    = ".json"  // one alert: dead letters, and alerts put back by 'spool retry'
	heldExt    = ".held"  // in dead/: a queue file the service could not read
	batchExt   = ".jsonl" // a batch in a file of its own, as releases before segments wrote
	segmentExt = ".log"   // batches appended one after the other, one JSON object a line
)

// segmentSize is the room a new segment is given, zero-filled when it is
// made (a batch larger than that gets a segment of its own size).
//
// Writing a batch over blocks the file already has means fdatasync flushes
// that data and nothing else: no new file, no directory entry, no size or
// block map to journal. Measured on ext4 (make bench's machine), a batch so
// written costs 85 µs of CPU against 330 µs for a file of its own with its
// directory fsynced, and it reaches the disk in half the time. The zeros
// are written once per segment; for the alerts a segment holds, that is
// about as many bytes again as the alerts themselves, where a file per
// batch wrote a journal commit of several blocks for every batch.
var segmentSize int64 = 1 << 20

// zeros fills new segments.
var zeros [64 << 10]byte

// Group commit bounds: how much one batch file may take.
const (
	maxBatch      = 256
	maxBatchBytes = 4 << 20
)

// diskStore keeps queued alerts in segments in queue/: a single committer
// appends all alerts that arrived while the previous write was under way to
// the current segment as one batch, fdatasyncs it once, and only then lets
// their senders have their 250. Under load that is one flush for many
// mails; alone, one for one. A segment is deleted when it is full and every
// alert in it is delivered. Dead letters are one file each in dead/.
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

	// The segment batches go to, and the batch being written: the
	// committer's alone.
	seg    *os.File
	segOff int64 // where the next batch goes
	segCap int64
	buf    []byte
	// The next segment, made ahead in the background once the first is
	// full, so that a batch does not wait for a megabyte of zeros.
	spare    chan spareSegment // one, when made
	makingIt bool

	mu      sync.Mutex
	active  string              // the segment being written: kept when empty
	batchOf map[string]recLoc   // alert id -> where in queue/ it is
	refs    map[string]int      // file in queue/ -> alerts in it not yet removed
	durable map[string]bool     // file in queue/ -> its removal must be fsynced
	open    map[string]*os.File // file in queue/ -> kept open to blank its records
}

// spareSegment is a segment made ahead, or why it could not be.
type spareSegment struct {
	f    *os.File
	name string
	err  error
}

// recLoc is where a queued alert's record is: file in queue/, offset, length.
type recLoc struct {
	name string
	off  int64
	n    int
}

type putRequest struct {
	id    string
	data  [][]byte // the record, in parts
	size  int      // their length
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
		batchOf: make(map[string]recLoc), refs: make(map[string]int), durable: make(map[string]bool),
		open: make(map[string]*os.File), spare: make(chan spareSegment, 1)}
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
func (d *diskStore) put(ctx context.Context, id string, record ...[]byte) error {
	r := &putRequest{id: id, data: record, res: make(chan error, 1)}
	for _, p := range record {
		r.size += len(p)
	}
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

// Under load (the last flush ended less than busyGap ago) the committer
// waits up to lingerFor for more mails to join a batch, as a database's
// group commit does: a flush costs this machine's kernel about as much CPU
// as the rest of a small mail's path, so more mails per flush is less CPU
// per mail, for a fraction of a millisecond more per sender. A mail that
// comes alone is written at once.
const (
	busyGap   = 2 * time.Millisecond
	lingerFor = 500 * time.Microsecond
)

// committers is how many batches may be on their way to disk at once.
// One: measured with 20 senders (make bench), a second committer splits the
// waiting mails into two smaller batches and halves throughput.
const committers = 1

// committer is one of the store's goroutines; close stops them.
func (d *diskStore) committer() {
	defer d.committers.Done()
	// Timers as of Go 1.23 (go.mod): Reset and Stop leave no stale tick to
	// drain.
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var last time.Time // when the last flush ended
	for first := range d.reqs {
		reqs, size := []*putRequest{first}, first.size
		busy := time.Since(last) < busyGap
		if busy {
			linger.Reset(lingerFor)
		}
	collect:
		for len(reqs) < maxBatch && size < maxBatchBytes {
			if busy {
				select {
				case r, ok := <-d.reqs:
					if !ok {
						break collect
					}
					reqs, size = append(reqs, r), size+r.size
				case <-linger.C:
					busy = false
				}
				continue
			}
			select {
			case r, ok := <-d.reqs:
				if !ok {
					break collect
				}
				reqs, size = append(reqs, r), size+r.size
			default:
				break collect
			}
		}
		linger.Stop()
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
		at, err := d.writeBatch(kept)
		last = time.Now()
		d.mu.Lock()
		b.settled = true
		abandoned := b.abandoned && err == nil
		d.mu.Unlock()
		if abandoned {
			d.forget(at, kept)
			err = storeError(errBatchAbandoned)
		}
		for _, r := range kept {
			r.res <- err
		}
	}
}

// forget blanks a batch written too late to count (no device had its 250
// for it) and lets go of its alerts.
func (d *diskStore) forget(at recLoc, reqs []*putRequest) {
	d.mu.Lock()
	for _, r := range reqs {
		delete(d.batchOf, r.id)
	}
	d.refs[at.name] -= len(reqs)
	d.mu.Unlock()
	if d.seg != nil {
		_ = blank(d.seg, at, true)
	}
}

// writeBatch appends the batch to the current segment, starting a new one
// when it has no room left, and fdatasyncs it. A crash mid-write leaves the
// batch's last line without its newline, or zeros in its place, which load
// recognises: none of its mails was acknowledged. It returns where the
// batch went.
func (d *diskStore) writeBatch(batch []*putRequest) (recLoc, error) {
	buf := d.buf[:0]
	for _, r := range batch {
		for _, p := range r.data {
			buf = append(buf, p...)
		}
		buf = append(buf, '\n')
	}
	if cap(buf) <= 1<<20 {
		d.buf = buf // kept for the next batch, unless a storm made it large
	}
	if d.seg == nil || d.segOff+int64(len(buf)) > d.segCap {
		if err := d.rotate(batch[0].id, int64(len(buf))); err != nil {
			return recLoc{}, storeError(fmt.Errorf("spool: new segment: %w", err))
		}
	}
	at := recLoc{name: d.active, off: d.segOff, n: len(buf)}
	_, err := d.seg.WriteAt(buf, at.off)
	if err == nil {
		err = syscall.Fdatasync(int(d.seg.Fd()))
	}
	if err != nil {
		// What reached the segment is blanked if it can be, and nothing
		// more is written to it: a failing disk gets a new file next time.
		_ = blank(d.seg, at, true)
		d.retire()
		return at, storeError(fmt.Errorf("spool: write %s: %w", at.name, err))
	}
	d.segOff += int64(len(buf))
	d.mu.Lock()
	off := at.off
	for _, r := range batch {
		d.batchOf[r.id] = recLoc{name: at.name, off: off, n: r.size}
		off += int64(r.size) + 1
	}
	d.refs[at.name] += len(batch)
	d.mu.Unlock()
	return at, nil
}

// rotate retires the current segment and makes the next: named after the
// first alert it is made for, zero-filled, fsynced, and its directory too.
// On a disk too full for a whole segment it makes do with less, down to
// the batch's own size.
func (d *diskStore) rotate(id string, need int64) error {
	filled := d.seg != nil // not the first segment since start: one filled up
	d.retire()
	need = (need + 4095) / 4096 * 4096
	if f, name, ok := d.takeSpare(need); ok {
		d.use(f, name, segmentSize)
		return nil
	}
	name := id + segmentExt
	path := filepath.Join(d.dir, queueDir, name)
	var f *os.File
	var err error
	size := max(segmentSize, need)
	for ; ; size /= 2 {
		f, err = makeSegment(path, size)
		if err == nil || !errors.Is(err, syscall.ENOSPC) || size/2 < need {
			break
		}
	}
	if err == nil {
		err = d.queue.Sync()
		if err != nil {
			f.Close()
			_ = os.Remove(path)
		}
	}
	if err != nil {
		return err
	}
	d.use(f, name, size)
	if filled && size == segmentSize && !d.makingIt {
		d.makeSpare() // segments fill up: from now on the next one is ready
	}
	return nil
}

// use makes f the segment batches go to.
func (d *diskStore) use(f *os.File, name string, size int64) {
	d.seg, d.segOff, d.segCap = f, 0, size
	d.mu.Lock()
	d.active = name
	d.open[name] = f
	d.mu.Unlock()
}

// takeSpare returns the segment made ahead, if it is ready and the batch
// fits, and starts making the next.
func (d *diskStore) takeSpare(need int64) (*os.File, string, bool) {
	if !d.makingIt {
		return nil, "", false
	}
	select {
	case s := <-d.spare:
		d.makingIt = false
		if s.err != nil {
			return nil, "", false // made here, then, as without one
		}
		if need > segmentSize {
			s.f.Close()
			_ = os.Remove(filepath.Join(d.dir, queueDir, s.name))
			return nil, "", false
		}
		d.makeSpare()
		return s.f, s.name, true
	default:
		return nil, "", false // still being made: this one is made here
	}
}

// makeSpare makes the next segment in the background, named for when it
// was made (alerts are ordered by their own ids, not their files').
func (d *diskStore) makeSpare() {
	d.makingIt = true
	size := segmentSize
	go func() {
		name := sink.NewID(time.Now()) + segmentExt
		path := filepath.Join(d.dir, queueDir, name)
		f, err := makeSegment(path, size)
		if err == nil {
			if err = d.queue.Sync(); err != nil {
				f.Close()
				_ = os.Remove(path)
			}
		}
		d.spare <- spareSegment{f: f, name: name, err: err}
	}()
}

// dropSpare waits for a segment being made ahead and removes it unused.
func (d *diskStore) dropSpare() {
	if !d.makingIt {
		return
	}
	d.makingIt = false
	if s := <-d.spare; s.err == nil {
		s.f.Close()
		_ = os.Remove(filepath.Join(d.dir, queueDir, s.name))
	}
}

// makeSegment creates a segment of size bytes, zero-filled and fsynced.
// That fsync is for cost, not safety: a batch's fdatasync would carry the
// zeros and the file's size and blocks to the disk as well, but then with a
// journal commit; after it, a batch's flush writes its data alone. (The
// directory's fsync, which the caller does, is for safety: it keeps the
// segment's name.)
func makeSegment(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	for off := int64(0); off < size && err == nil; off += int64(len(zeros)) {
		_, err = f.Write(zeros[:min(int64(len(zeros)), size-off)])
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return f, nil
}

// retire stops appending to the current segment; it goes now if every
// alert in it is delivered, else with the last of them.
func (d *diskStore) retire() {
	if d.seg == nil {
		return
	}
	d.seg = nil
	d.mu.Lock()
	name := d.active
	d.active = ""
	empty := d.refs[name] <= 0
	var f *os.File
	var durable bool
	if empty {
		f, durable = d.dropFileLocked(name)
	}
	d.mu.Unlock()
	if empty {
		_ = d.deleteFile(name, f, durable)
	}
}

// dropFileLocked forgets a file in queue/ that holds no alert any more and
// returns what its deletion needs: the file if it is open here, and
// whether the deletion must be fsynced. d.mu is held.
func (d *diskStore) dropFileLocked(name string) (f *os.File, durable bool) {
	f, durable = d.open[name], d.durable[name]
	delete(d.refs, name)
	delete(d.durable, name)
	delete(d.open, name)
	return f, durable
}

// deleteFile closes and deletes a file dropFileLocked let go of, and
// fsyncs the directory when a dead letter's removal depends on it.
func (d *diskStore) deleteFile(name string, f *os.File, durable bool) error {
	if f != nil {
		f.Close()
	}
	err := os.Remove(filepath.Join(d.dir, queueDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil && durable {
		err = d.queue.Sync()
	}
	return err
}

// blank removes the records in at in place: the first byte of each line
// becomes removedMark (one byte, which a power cut writes whole or not at
// all). flush: fdatasync it too; otherwise it reaches the disk with the
// segment's next flush, or the kernel's.
func blank(f *os.File, at recLoc, flush bool) error {
	buf := make([]byte, at.n)
	if _, err := f.ReadAt(buf, at.off); err != nil {
		return err
	}
	var err error
	for i := 0; i < len(buf) && err == nil; {
		if buf[i] == '{' { // a record; not zeros a failed write left
			err = markRemoved(f, at.off+int64(i), false)
		}
		n := bytes.IndexByte(buf[i:], '\n')
		if n < 0 {
			break
		}
		i += n + 1
	}
	if err == nil && flush {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	return err
}

// markRemoved marks the record whose line starts at off removed; flush:
// and fdatasyncs it.
func markRemoved(f *os.File, off int64, flush bool) error {
	_, err := f.WriteAt([]byte{removedMark}, off)
	if err == nil && flush {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	return err
}

// blankRecord is blank for a file not open here (edgesink spool drop).
func blankRecord(path string, at recLoc) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = blank(f, at, true)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
	d.retire() // the committers are gone: the segment is no one's
	d.dropSpare()
	d.mu.Lock()
	for name, f := range d.open {
		f.Close()
		delete(d.open, name)
	}
	d.mu.Unlock()
	return d.queue.Close()
}

// remove forgets a delivered alert: its record is blanked where it is,
// and its file goes when it holds nothing else and is not the segment being
// written. A delivered alert's removal is not flushed (a power cut first
// means it is delivered once more, which at least once allows); a dead
// letter's is (durably), or the alert would come back from the dead at the
// next start.
func (d *diskStore) remove(id string, durably bool) error {
	d.mu.Lock()
	at, ok := d.batchOf[id]
	if !ok {
		d.mu.Unlock()
		return nil
	}
	delete(d.batchOf, id)
	d.refs[at.name]--
	if durably {
		d.durable[at.name] = true
	}
	last := d.refs[at.name] <= 0 && at.name != d.active
	durably = d.durable[at.name]
	f := d.open[at.name]
	if last {
		d.dropFileLocked(at.name)
	} else if f == nil {
		var err error
		if f, err = os.OpenFile(filepath.Join(d.dir, queueDir, at.name), os.O_RDWR, 0); err != nil {
			d.mu.Unlock()
			return err
		}
		d.open[at.name] = f
	}
	d.mu.Unlock()
	if !last {
		// One record, whose first byte is at.off. The file may go meanwhile
		// with its last alert: then so has this.
		if err := markRemoved(f, at.off, durably); err != nil && !errors.Is(err, os.ErrClosed) {
			return err
		}
		return nil
	}
	return d.deleteFile(at.name, f, durably)
}

// markDelivered is remove for a delivered alert whose file stays (others
// in it are queued, or it is the segment being written): its record is
// marked removed, a write to the page cache. It does nothing and returns
// false when removing it means deleting its file, which the remover does:
// on ext4 an unlink can wait for a journal commit.
func (d *diskStore) markDelivered(id string) bool {
	d.mu.Lock()
	at, ok := d.batchOf[id]
	if !ok {
		d.mu.Unlock()
		return true
	}
	f := d.open[at.name]
	if f == nil || (d.refs[at.name] <= 1 && at.name != d.active) {
		d.mu.Unlock()
		return false
	}
	delete(d.batchOf, id)
	d.refs[at.name]--
	d.mu.Unlock()
	// The file may go meanwhile with its last alert: then so has this. A
	// mark that fails leaves the alert to be delivered once more after a
	// restart, which at least once allows.
	_ = markRemoved(f, at.off, false)
	return true
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
		isSegment := strings.HasSuffix(name, segmentExt)
		isBatch := isSegment || strings.HasSuffix(name, batchExt)
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
		lines, tail := splitRecords(data)
		switch {
		case isSegment && len(tail.data) > 0:
			// The last batch was cut short by a crash before its flush
			// finished: no device got a 250 for it, and they still have the
			// mails. Those before it stand.
			d.onPartial(name)
		case isBatch && !isSegment && (len(tail.data) > 0 || len(lines) == 0):
			// A batch file of its own cut short: none of it was acknowledged.
			if atStart {
				_ = os.Remove(path)
				d.onPartial(name)
			}
			continue
		case !isBatch && isRecord(tail.data):
			lines = append(lines, tail) // a single record needs no newline
		}
		var alerts []stored
		var locs []recLoc
		for i, l := range lines {
			line := l.data
			rec, err := decodeRecord(line)
			if err != nil {
				if !atStart {
					return nil, nil // being written; look again later
				}
				id := fmt.Sprintf("%s-%d", strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, batchExt), jsonExt), segmentExt), i)
				_ = writeFileSync(filepath.Join(d.dir, deadDir, id+".corrupt"), line)
				onCorrupt(id, fmt.Sprintf("unreadable alert in %s: %v", name, err))
				continue
			}
			alerts = append(alerts, stored{alert: rec.Alert, route: rec.Route, size: int64(len(line)), folded: rec.Folded})
			locs = append(locs, recLoc{name: name, off: l.off, n: len(line)})
		}
		if len(alerts) == 0 {
			_ = os.Remove(path)
			continue
		}
		d.mu.Lock()
		for i, s := range alerts {
			d.batchOf[s.alert.ID] = locs[i]
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

func newMemoryStore() *memoryStore                                  { return &memoryStore{} }
func (m *memoryStore) put(context.Context, string, ...[]byte) error { return nil }
func (m *memoryStore) markDelivered(string) bool                    { return true }
func (m *memoryStore) remove(string, bool) error                    { return nil }
func (m *memoryStore) close() error                                 { return nil }
func (m *memoryStore) load(func(string, string)) ([]stored, error)  { return nil, nil }

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
