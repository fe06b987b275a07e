package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// store is where queued alerts live between Handle and delivery.
type store interface {
	put(id string, data []byte) error // durable when it returns
	remove(id string) error
	dead(d DeadLetter) error
	load(onCorrupt func(id, reason string)) ([]stored, error) // oldest first
	close() error
}

type stored struct {
	alert *sink.Alert
	size  int64
}

// Layout of a disk spool.
const (
	queueDir = "queue"
	deadDir  = "dead"
	tmpExt   = ".tmp"
	jsonExt  = ".json"
)

// diskStore keeps one JSON file per queued alert in queue/ and one per
// dead letter in dead/.
type diskStore struct {
	dir   string
	queue *os.File // kept open to fsync the directory after each rename
	mu    sync.Mutex
}

func openDiskStore(dir string) (*diskStore, error) {
	for _, d := range []string{dir, filepath.Join(dir, queueDir), filepath.Join(dir, deadDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: create %s: %w", d, err)
		}
	}
	q, err := os.Open(filepath.Join(dir, queueDir))
	if err != nil {
		return nil, fmt.Errorf("spool: open queue: %w", err)
	}
	return &diskStore{dir: dir, queue: q}, nil
}

// put writes data to a temporary file, fsyncs it, renames it into place and
// fsyncs the directory: after a crash the alert is either whole in the queue
// or absent (and its mail was never acknowledged).
func (d *diskStore) put(id string, data []byte) error {
	final := filepath.Join(d.dir, queueDir, id+jsonExt)
	if err := writeFileSync(final, data); err != nil {
		return storeError(fmt.Errorf("spool: write %s: %w", id, err))
	}
	if err := d.queue.Sync(); err != nil {
		_ = os.Remove(final)
		return storeError(fmt.Errorf("spool: sync queue directory: %w", err))
	}
	return nil
}

// writeFileSync writes path atomically and durably (without the directory
// sync, which the caller does).
func writeFileSync(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+tmpExt)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// storeError turns a full disk into sink.ErrStorageFull (452) and any other
// I/O failure into a temporary error (451): the device keeps the mail.
func storeError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", sink.ErrStorageFull, err)
	}
	return forward.Temporary(err)
}

func (d *diskStore) close() error { return d.queue.Close() }

func (d *diskStore) remove(id string) error {
	err := os.Remove(filepath.Join(d.dir, queueDir, id+jsonExt))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (d *diskStore) dead(dl DeadLetter) error {
	data, err := json.MarshalIndent(dl, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, deadDir, dl.Alert.ID+"."+sink.SafeName(dl.Output)+jsonExt)
	if err := writeFileSync(path, data); err != nil {
		return err
	}
	return syncDir(filepath.Join(d.dir, deadDir))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// load removes half-written files (their mail was never acknowledged) and
// returns the queued alerts, oldest first. Unreadable files are moved to
// dead/ with a note.
func (d *diskStore) load(onCorrupt func(id, reason string)) ([]stored, error) {
	return d.read(true, onCorrupt)
}

// scan returns the queued alerts without touching files that may be in
// the middle of being written.
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
		switch {
		case strings.HasSuffix(name, tmpExt):
			if atStart {
				_ = os.Remove(path) // half-written before a crash; never acknowledged
			}
			continue
		case !strings.HasSuffix(name, jsonExt) || de.IsDir():
			continue
		}
		id := strings.TrimSuffix(name, jsonExt)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) && !atStart {
			continue // delivered meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("spool: read %s: %w", name, err)
		}
		var a sink.Alert
		if err := json.Unmarshal(data, &a); err != nil || a.ID != id {
			if !atStart {
				continue
			}
			reason := fmt.Sprintf("unreadable queue file: %v", err)
			if err == nil {
				reason = fmt.Sprintf("queue file %s holds alert %q", name, a.ID)
			}
			_ = os.Rename(path, filepath.Join(d.dir, deadDir, id+".corrupt"))
			onCorrupt(id, reason)
			continue
		}
		out = append(out, stored{alert: &a, size: int64(len(data))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].alert.ID < out[j].alert.ID })
	return out, syncDir(qdir)
}

// memoryStore keeps nothing: queued alerts live only in the Spool's lanes.
type memoryStore struct {
	mu      sync.Mutex
	letters []DeadLetter
}

func newMemoryStore() *memoryStore                                 { return &memoryStore{} }
func (m *memoryStore) put(string, []byte) error                    { return nil }
func (m *memoryStore) remove(string) error                         { return nil }
func (m *memoryStore) close() error                                { return nil }
func (m *memoryStore) load(func(string, string)) ([]stored, error) { return nil, nil }

func (m *memoryStore) dead(d DeadLetter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.letters = append(m.letters, d)
	return nil
}
