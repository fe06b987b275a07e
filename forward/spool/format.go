package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/edgesink/edgesink/sink"
)

// The spool's files, read and written here only:
//
//	queue/<id>.log     a segment: batches of records appended one after the
//	                   other, one record a line, in room zero-filled when the
//	                   segment was made; a last line without its newline was
//	                   cut short by a crash; a line that starts with a
//	                   blank, a record removed
//	queue/<id>.jsonl   a batch in a file of its own (releases before
//	                   segments): read, never written
//	queue/<id>.json    one record, put back by 'edgesink spool retry'
//	dead/<id>.<output>.json  a DeadLetter
//
// A record is {"v":1,"route":{…},"alert":{…}}: the alert and the decisions
// made when it was accepted. The first release wrote the bare alert (version
// 0); such a line is read as an alert for every output.
//
// Two optional keys came later without a new version, because a release
// that does not know them still does the right thing with the record:
// route.templates (a routing rule's topic or line; without it, the output's
// own) and "folded":true (an alert coalesced into a follow-up, its bodies
// dropped; without the key it is delivered on its own, nothing is lost).
// Records without them are byte for byte what the previous release wrote.

// FormatVersion is the version of the records this release writes.
const FormatVersion = 1

// Route is where an alert goes, decided once when it is accepted and stored
// with it, so a changed configuration never reroutes what is queued.
type Route struct {
	// Outputs names the outputs that deliver the alert; empty: every one.
	Outputs []string `json:"outputs,omitempty"`
	// Templates is a routing rule's template per output name (mqtt: the
	// topic, serial: the line); an output not named uses its own.
	Templates map[string]string `json:"templates,omitempty"`
}

// template is the rule's template for output name, "" for the output's own.
func (r Route) template(name string) string { return r.Templates[name] }

// includes reports whether output name is on the route.
func (r Route) includes(name string) bool {
	return len(r.Outputs) == 0 || slices.Contains(r.Outputs, name)
}

// record is one queued alert as the spool keeps it.
type record struct {
	Version int         `json:"v"`
	Route   Route       `json:"route"`
	Folded  bool        `json:"folded,omitempty"` // held for a coalescing follow-up (coalesce.go)
	Alert   *sink.Alert `json:"alert"`
}

// errNewerFormat: a record written by a later release; left alone.
var errNewerFormat = errors.New("written by a newer edgesink")

func encodeRecord(a *sink.Alert, route Route, folded bool) ([]byte, error) {
	alert, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("spool: encode %s: %w", a.ID, err)
	}
	head, err := recordHead(route, folded)
	if err != nil {
		return nil, err
	}
	data := make([]byte, 0, len(head)+len(alert)+len(recordTail))
	return append(append(append(data, head...), alert...), recordTail...), nil
}

// recordHead is a record's encoding up to its alert, the last field: with
// the alert's own encoding and recordTail after it, the bytes encodeRecord
// gives, for an alert encoded once upstream.
func recordHead(route Route, folded bool) ([]byte, error) {
	head, err := json.Marshal(record{Version: FormatVersion, Route: route, Folded: folded})
	if err != nil {
		return nil, fmt.Errorf("spool: encode route: %w", err)
	}
	return bytes.TrimSuffix(head, []byte("null}")), nil // "alert":null}
}

var recordTail = []byte("}")

// decodeRecord reads one record, of this version or the first release's.
func decodeRecord(line []byte) (record, error) {
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return record{}, err
	}
	switch {
	case r.Version > FormatVersion:
		return record{}, fmt.Errorf("record version %d: %w", r.Version, errNewerFormat)
	case r.Version == 0: // the first release: the line is the alert
		r = record{Alert: &sink.Alert{}}
		if err := json.Unmarshal(line, r.Alert); err != nil {
			return record{}, err
		}
	}
	if r.Alert == nil || r.Alert.ID == "" {
		return record{}, errors.New("record without an alert id")
	}
	return r, nil
}

// recordLines splits a queue file into its records' lines. complete is
// false when the file does not end with a newline: a batch cut short by a
// crash (a single-record file, written by rename, is always complete). A
// segment's zero-filled room is not part of its data (queueData).
func recordLines(data []byte) (lines [][]byte, complete bool) {
	at, tail := splitRecords(data)
	for _, l := range at {
		lines = append(lines, l.data)
	}
	if isRecord(tail.data) {
		lines = append(lines, tail.data)
	}
	data = queueData(data)
	return lines, len(data) > 0 && data[len(data)-1] == '\n'
}

// lineAt is one line of a queue file and where it starts.
type lineAt struct {
	data []byte
	off  int64
}

// splitRecords returns the records' lines, each ended by a newline, and the
// tail after the last newline (in a segment, a batch cut short by a crash).
func splitRecords(data []byte) (lines []lineAt, tail lineAt) {
	data = queueData(data)
	var off int64
	for {
		line, rest, found := bytes.Cut(data, []byte("\n"))
		if !found {
			return lines, lineAt{data: line, off: off}
		}
		if isRecord(line) {
			lines = append(lines, lineAt{data: line, off: off})
		}
		off += int64(len(line)) + 1
		data = rest
	}
}

// isRecord is false for an empty line and for a record removed in place:
// its first byte overwritten with removedMark, one write that a power cut
// cannot tear.
func isRecord(line []byte) bool {
	return len(line) > 0 && line[0] != removedMark && len(bytes.TrimSpace(line)) > 0
}

// removedMark is the first byte of a record removed in place.
const removedMark = ' '

// queueData is what a queue file holds: up to the first zero byte, where a
// segment's room not yet written begins (a record, JSON, never holds one).
func queueData(data []byte) []byte {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return data[:i]
	}
	return data
}

// readableRecords decodes the lines of a queue file an operator looks at
// (the service may be writing it): lines that do not decode are skipped.
func readableRecords(data []byte) []record {
	lines, _ := recordLines(data)
	out := make([]record, 0, len(lines))
	for _, line := range lines {
		if r, err := decodeRecord(line); err == nil {
			out = append(out, r)
		}
	}
	return out
}

func encodeDeadLetter(d DeadLetter) ([]byte, error) {
	d.Version = FormatVersion
	return json.MarshalIndent(d, "", "  ")
}

func decodeDeadLetter(data []byte) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(data, &d); err != nil {
		return DeadLetter{}, err
	}
	if d.Version > FormatVersion {
		return DeadLetter{}, fmt.Errorf("dead letter version %d: %w", d.Version, errNewerFormat)
	}
	if d.Alert == nil || d.Alert.ID == "" {
		return DeadLetter{}, errors.New("dead letter without an alert")
	}
	return d, nil
}
