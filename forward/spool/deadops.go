package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edgesink/edgesink/sink"
)

// What the status page and 'edgesink spool replay' do with dead letters
// while the service runs: list them with their reasons, put them back,
// drop them, and keep the raw mail of each beside it (RawExt).

// RawExt ends the file, beside a dead letter in dead/, that holds the raw
// mail the device sent for it (written by whoever kept it: the status
// page's raw store). It is best-effort data: not fsynced.
const RawExt = ".eml"

// OnDeadLetter makes the spool call f, from the lane that gave up, each
// time an alert becomes a dead letter (after it is stored as one). f must
// not block for long; set it before mail arrives.
func (s *Spool) OnDeadLetter(f func(DeadLetter)) { s.onDead = f }

// Decision is what the queue decided for one alert it was handed, before
// storing it: OnDecided's argument.
type Decision struct {
	ID      string
	Outputs []string // the outputs that deliver it; empty: every one
	Dropped bool     // a routing rule sends it nowhere (outputs: none)
	Folded  bool     // coalesced: it goes out in its storm's follow-up
}

// OnDecided makes the spool call f, from Handle, with each alert's route
// as soon as it is decided (the status page shows only the outputs that
// will deliver it). f must not block; set it before mail arrives.
func (s *Spool) OnDecided(f func(Decision)) { s.onDecided = f }

func (s *Spool) decided(d Decision) {
	if s.onDecided != nil {
		s.onDecided(d)
	}
}

// Dir is the spool's directory ("" unless in disk mode).
func (s *Spool) Dir() string {
	if s.cfg.Mode != ModeDisk {
		return ""
	}
	return s.cfg.Dir
}

// Dead returns the dead letters the spool holds, oldest first: read from
// dead/ in disk mode, from RAM in memory mode.
func (s *Spool) Dead() ([]DeadLetter, error) {
	switch st := s.store.(type) {
	case *memoryStore:
		return st.deadLetters(), nil
	case *diskStore:
		return ReadDeadLetters(st.dir)
	}
	return nil, nil
}

// ReadDeadLetters reads every dead letter in a disk spool's dead/, oldest
// first. Unreadable ones are left out ('spool list' shows them).
func ReadDeadLetters(dir string) ([]DeadLetter, error) {
	des, err := os.ReadDir(filepath.Join(dir, deadDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []DeadLetter
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, jsonExt) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, deadDir, name))
		if err != nil {
			continue
		}
		if d, err := decodeDeadLetter(data); err == nil {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Alert.ID < out[j].Alert.ID })
	return out, nil
}

// ReadDeadLetter returns one dead letter of alert id in a disk spool (the
// first output's, when several gave up on it).
func ReadDeadLetter(dir, id string) (DeadLetter, error) {
	all, err := ReadDeadLetters(dir)
	if err != nil {
		return DeadLetter{}, err
	}
	for _, d := range all {
		if d.Alert.ID == id {
			return d, nil
		}
	}
	return DeadLetter{}, fmt.Errorf("%w: no dead letter %s", ErrNotFound, id)
}

// RawPath is where the raw mail of dead letter id is kept in a disk spool.
// id must be an alert id (sink.NewID); anything else gets a path that
// never exists.
func RawPath(dir, id string) string {
	if !ValidID(id) {
		id = "invalid-id"
	}
	return filepath.Join(dir, deadDir, id+RawExt)
}

// ValidID tells whether id has the form of an alert id (sink.NewID: hex),
// so it can name a file or a URL path safely.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// RetryDead puts dead letter id back in the queue of this running spool.
func (s *Spool) RetryDead(ctx context.Context, id string) error {
	switch st := s.store.(type) {
	case *diskStore:
		if err := Retry(st.dir, id); err != nil {
			return err
		}
		_, err := s.Rescan()
		return err
	case *memoryStore:
		d, ok := st.take(id)
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return s.Handle(ctx, d.Alert)
	}
	return fmt.Errorf("%w: %s (spool mode %s keeps no dead letters)", ErrNotFound, id, s.cfg.Mode)
}

// DropDead deletes dead letter id (and its raw mail) for good.
func (s *Spool) DropDead(id string) error {
	switch st := s.store.(type) {
	case *diskStore:
		if err := Drop(st.dir, id); err != nil {
			return err
		}
		if err := os.Remove(RawPath(st.dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: drop raw mail of %s: %w", id, err)
		}
		return nil
	case *memoryStore:
		if _, ok := st.take(id); !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotFound, id)
}

// take removes every dead letter of alert id and returns the first.
func (m *memoryStore) take(id string) (DeadLetter, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var found DeadLetter
	ok := false
	keep := m.letters[:0]
	for _, d := range m.letters {
		if d.Alert.ID == id {
			if !ok {
				found, ok = d, true
			}
			continue
		}
		keep = append(keep, d)
	}
	m.letters = keep
	return found, ok
}

// Enqueue writes a new alert into a disk spool's queue, for every output,
// as 'edgesink spool retry' does (fsynced, as the queue directory's owner);
// a running edgesink takes it up on SIGHUP or at its next start.
func Enqueue(dir string, a *sink.Alert) error {
	if !ValidID(a.ID) {
		return fmt.Errorf("spool: enqueue: bad id %q", a.ID)
	}
	data, err := encodeRecord(a, Route{}, false)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(dir, queueDir, a.ID+jsonExt), data); err != nil {
		return fmt.Errorf("spool: enqueue %s: %w", a.ID, err)
	}
	return nil
}
