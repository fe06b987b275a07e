package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edgesink/edgesink/sink"
)

// Item is one file of a disk spool, as an operator sees it.
type Item struct {
	ID         string
	State      string // "queued", "dead", "corrupt" or "held" (a queue file the service could not read)
	Device     string
	Subject    string
	ReceivedAt time.Time
	Output     string // dead letters: the output that gave up
	Reason     string // dead letters: why
	Path       string
}

// ErrNotFound is returned for an id the spool does not hold.
var ErrNotFound = errors.New("spool: no such alert")

// List reads a disk spool directory (the daemon may be running) and returns
// its queued alerts and dead letters, oldest first. A spool that does not
// exist yet is empty; List never creates it.
func List(dir string) ([]Item, error) {
	var items []Item
	q, err := os.ReadDir(filepath.Join(dir, queueDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, de := range q {
		name := de.Name()
		isBatch := strings.HasSuffix(name, batchExt) || strings.HasSuffix(name, segmentExt)
		if strings.HasPrefix(name, ".") || (!isBatch && !strings.HasSuffix(name, jsonExt)) {
			continue
		}
		path := filepath.Join(dir, queueDir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			continue // delivered and removed meanwhile
		}
		for _, r := range readableRecords(data) { // a line being written does not read yet
			a := r.Alert
			items = append(items, Item{ID: a.ID, State: "queued", Device: a.Device, Subject: a.Subject,
				ReceivedAt: a.ReceivedAt, Path: path})
		}
	}
	d, err := os.ReadDir(filepath.Join(dir, deadDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, de := range d {
		name := de.Name()
		path := filepath.Join(dir, deadDir, name)
		switch {
		case strings.HasPrefix(name, "."):
		case strings.HasSuffix(name, heldExt):
			items = append(items, heldItems(path, name)...)
		case strings.HasSuffix(name, ".corrupt"):
			items = append(items, Item{ID: strings.TrimSuffix(name, ".corrupt"), State: "corrupt", Path: path,
				Reason: "unreadable queue file"})
		case strings.HasSuffix(name, jsonExt):
			data, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			dl, err := decodeDeadLetter(data)
			if err != nil {
				continue
			}
			items = append(items, Item{ID: dl.Alert.ID, State: "dead", Device: dl.Alert.Device, Subject: dl.Alert.Subject,
				ReceivedAt: dl.Alert.ReceivedAt, Output: dl.Output, Reason: dl.Reason, Path: path})
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	return items, nil
}

// heldItems lists the alerts in a queue file set aside as unreadable: one
// item per alert when this process can read it (root can), else one for the
// file.
func heldItems(path, name string) []Item {
	const why = "the service could not read this queue file (owner or mode); 'spool retry ID' puts it back"
	data, err := os.ReadFile(path)
	if err != nil {
		return []Item{{ID: strings.TrimSuffix(name, heldExt), State: "held", Path: path, Reason: err.Error()}}
	}
	var items []Item
	for _, r := range readableRecords(data) {
		a := r.Alert
		items = append(items, Item{ID: a.ID, State: "held", Device: a.Device, Subject: a.Subject,
			ReceivedAt: a.ReceivedAt, Path: path, Reason: why})
	}
	return items
}

// Show returns the files a spool holds for id.
func Show(dir, id string) ([]Item, error) {
	items, err := List(dir)
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, it := range items {
		if it.ID == id {
			out = append(out, it)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return out, nil
}

// Retry puts a dead-lettered or held alert back in the queue, for every
// output. It writes as the queue directory's owner (a temporary file, fsynced
// and renamed; chowned when run as root), so the service can read it, and
// never takes the service's lock. A running edgesink picks it up at its next
// start or on SIGHUP.
func Retry(dir, id string) error {
	items, err := Show(dir, id)
	if err != nil {
		return err
	}
	var alert *sink.Alert
	for _, it := range items {
		if it.State == "queued" {
			return fmt.Errorf("spool: %s is already queued", id)
		}
		if it.State == "dead" {
			data, err := os.ReadFile(it.Path)
			if err != nil {
				return fmt.Errorf("spool: read dead letter %s: %w", it.Path, err)
			}
			dl, err := decodeDeadLetter(data)
			if err != nil {
				return fmt.Errorf("spool: read dead letter %s: %w", it.Path, err)
			}
			alert = dl.Alert
		}
		if it.State == "held" {
			a, err := alertIn(it.Path, id)
			if err != nil {
				return err
			}
			alert = a
		}
	}
	if alert == nil {
		return fmt.Errorf("spool: %s has no readable dead letter to retry", id)
	}
	data, err := encodeRecord(alert, Route{}, false) // every output, as before it died
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(dir, queueDir, id+jsonExt), data); err != nil {
		return fmt.Errorf("spool: requeue %s: %w", id, err)
	}
	for _, it := range items {
		if err := dropFrom(it.Path, id); err != nil {
			return fmt.Errorf("spool: requeue %s: remove %s: %w", id, it.Path, err)
		}
	}
	// Durably gone, or a power cut brings the dead letter back beside the
	// queued alert.
	if err := syncDir(filepath.Join(dir, deadDir)); err != nil {
		return fmt.Errorf("spool: requeue %s: %w", id, err)
	}
	return nil
}

// alertIn finds alert id among the lines of a queue file.
func alertIn(path, id string) (*sink.Alert, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", path, err)
	}
	for _, r := range readableRecords(data) {
		if r.Alert.ID == id {
			return r.Alert, nil
		}
	}
	return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, id, path)
}

// Drop deletes everything the spool holds for id. The alert is gone for
// good once no edgesink is running (a running one may still deliver an
// alert it has already queued).
func Drop(dir, id string) error {
	items, err := Show(dir, id)
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := dropFrom(it.Path, id); err != nil {
			return fmt.Errorf("spool: drop %s: %w", it.Path, err)
		}
	}
	return nil
}

// dropFrom removes id's line from a batch file, or the file if nothing else
// is left in it.
func dropFrom(path, id string) error {
	if strings.HasSuffix(path, segmentExt) {
		return dropFromSegment(path, id)
	}
	if !strings.HasSuffix(path, batchExt) && !strings.HasSuffix(path, heldExt) {
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Every other line stays as it is, readable or not (an unreadable one
	// is set aside as corrupt at the next start).
	lines, _ := recordLines(data)
	var keep []byte
	for _, line := range lines {
		if r, err := decodeRecord(line); err == nil && r.Alert.ID == id {
			continue
		}
		keep = append(append(keep, line...), '\n')
	}
	if len(keep) == 0 {
		return os.Remove(path)
	}
	return writeFileSync(path, keep)
}

// dropFromSegment blanks id's line in place: a running edgesink may be
// appending to the segment, so it is never rewritten. The segment goes with
// its last alert (or, empty, at the next start).
func dropFromSegment(path, id string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines, _ := splitRecords(data)
	for _, l := range lines {
		if r, err := decodeRecord(l.data); err == nil && r.Alert.ID == id {
			return blankRecord(path, recLoc{off: l.off, n: len(l.data)})
		}
	}
	return nil
}

// Stats is a read-only picture of a spool: what the log and 'edgesink
// spool list' report.
type Stats struct {
	Queued int       // alerts not yet delivered by every output
	Bytes  int64     // their size as stored (live spool only)
	Oldest time.Time // when the oldest queued alert was received; zero if none
	Dead   int       // dead letters
	Held   int       // alerts in queue files the service could not read
}

// String is the one-line summary: "3 queued (oldest 2026-11-23 20:14:05), 1 dead letter".
func (st Stats) String() string {
	s := fmt.Sprintf("%d queued", st.Queued)
	if !st.Oldest.IsZero() {
		s += fmt.Sprintf(" (oldest %s)", st.Oldest.Local().Format(time.DateTime))
	}
	s += fmt.Sprintf(", %d dead letter", st.Dead)
	if st.Dead != 1 {
		s += "s"
	}
	if st.Held > 0 {
		s += fmt.Sprintf(", %d held", st.Held)
	}
	return s
}

// StatsOf sums up the items List returned.
func StatsOf(items []Item) Stats {
	var st Stats
	for _, it := range items {
		switch it.State {
		case "queued":
			st.Queued++
			if !it.ReceivedAt.IsZero() && (st.Oldest.IsZero() || it.ReceivedAt.Before(st.Oldest)) {
				st.Oldest = it.ReceivedAt
			}
		case "dead", "corrupt":
			st.Dead++
		case "held":
			st.Held++
		}
	}
	return st
}
