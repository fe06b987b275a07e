package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRecordFormat(t *testing.T) {
	a := testAlert(1, "cam")
	v1, err := encodeRecord(a, Route{Outputs: []string{"mqtt"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(v1), `{"v":1,"route":{"outputs":["mqtt"]},"alert":{"id":"`) {
		t.Fatalf("record %s", v1)
	}
	v0 := `{"id":"18fae27693b40000474a5a75","device":"ups","subject":"first release"}`
	tests := []struct {
		name, line      string
		wantID, wantDev string
		wantRoute       []string
		wantErr         error
	}{
		{name: "this release", line: string(v1), wantID: a.ID, wantDev: "cam", wantRoute: []string{"mqtt"}},
		{name: "first release: the bare alert, every output", line: v0, wantID: "18fae27693b40000474a5a75", wantDev: "ups"},
		{name: "newer release", line: `{"v":2,"route":{},"alert":{"id":"x"}}`, wantErr: errNewerFormat},
		{name: "no id", line: `{"v":1,"alert":{"device":"cam"}}`},
		{name: "no alert", line: `{"v":1}`},
		{name: "not json", line: `{"v":1,"alert":{"id":"x"`},
	}
	for _, tt := range tests {
		r, err := decodeRecord([]byte(tt.line))
		if tt.wantID == "" {
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("%s: err %v, want %v", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || r.Alert.ID != tt.wantID || r.Alert.Device != tt.wantDev || !slices.Equal(r.Route.Outputs, tt.wantRoute) {
			t.Errorf("%s: %+v %v", tt.name, r, err)
		}
	}
}

// TestDropRewritesBatch: dropping one alert of a batch file rewrites the
// file with every other line as it was, an unreadable one included.
func TestDropRewritesBatch(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, queueDir), 0o700); err != nil {
		t.Fatal(err)
	}
	var lines, ids []string
	for i := range 3 {
		a := testAlert(i, "cam")
		ids = append(ids, a.ID)
		rec, err := encodeRecord(a, Route{}, false)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(rec))
	}
	lines = append(lines, `{"v":1,"alert":` /* cut short, set aside at the next start */)
	path := filepath.Join(dir, queueDir, "batch"+batchExt)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Drop(dir, ids[1]); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if want := lines[0] + "\n" + lines[2] + "\n" + lines[3] + "\n"; string(data) != want {
		t.Fatalf("after drop:\n%s\nwant:\n%s", data, want)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if err := Drop(dir, id); err != nil {
			t.Fatal(err)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != lines[3]+"\n" {
		t.Fatalf("only the unreadable line should be left: %q", data)
	}
}

// TestStoredRouteHonoured: an alert goes to the outputs its stored route
// names, whatever the configuration says now; a route naming no output
// that exists any more goes to every output rather than waiting forever.
func TestStoredRouteHonoured(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, queueDir), 0o700); err != nil {
		t.Fatal(err)
	}
	onlyMQTT, _ := encodeRecord(testAlert(1, "cam"), Route{Outputs: []string{"mqtt"}}, false)
	gone, _ := encodeRecord(testAlert(2, "ups"), Route{Outputs: []string{"led-sign"}}, false)
	if err := os.WriteFile(filepath.Join(dir, queueDir, "b"+batchExt), []byte(string(onlyMQTT)+"\n"+string(gone)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mqtt, serial := &fakeOutput{name: "mqtt"}, &fakeOutput{name: "serial"}
	s := open(t, Config{Dir: dir}, mqtt, serial)
	drain(t, s)
	subjects := func(o *fakeOutput) (out []string) {
		for _, a := range o.delivered() {
			out = append(out, a.Subject)
		}
		slices.Sort(out)
		return out
	}
	if got := subjects(mqtt); !slices.Equal(got, []string{"alert 1", "alert 2"}) {
		t.Errorf("mqtt got %q", got)
	}
	if got := subjects(serial); !slices.Equal(got, []string{"alert 2"}) {
		t.Errorf("serial got %q, want only the alert whose route names no existing output", got)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	rec, _ := encodeRecord(testAlert(1, "cam"), Route{Outputs: []string{"mqtt"}}, false)
	f.Add(rec)
	f.Add([]byte(`{"id":"18fae27693b40000474a5a75","device":"ups"}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := decodeRecord(line)
		if err == nil && (r.Alert == nil || r.Alert.ID == "" || r.Version > FormatVersion) {
			t.Fatalf("decoded %q into %+v", line, r)
		}
	})
}

// TestRecordFormatLater: a folded record and a rule's templates are two
// optional keys of version 1: a record without them is what the previous
// release wrote, and one with them reads back with both.
func TestRecordFormatLater(t *testing.T) {
	a := testAlert(1, "cam")
	plain, _ := encodeRecord(a, Route{Outputs: []string{"mqtt"}}, false)
	if strings.Contains(string(plain), "folded") || strings.Contains(string(plain), "templates") {
		t.Fatalf("a plain record changed: %s", plain)
	}
	line, err := encodeRecord(a, Route{Outputs: []string{"mqtt"}, Templates: map[string]string{"mqtt": "cams/{device}"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(line), `{"v":1,"route":{"outputs":["mqtt"],"templates":{"mqtt":"cams/{device}"}},"folded":true,"alert":{`) {
		t.Fatalf("record %s", line)
	}
	r, err := decodeRecord(line)
	if err != nil || !r.Folded || r.Route.template("mqtt") != "cams/{device}" || r.Route.template("serial") != "" {
		t.Fatalf("%+v %v", r, err)
	}
}

// TestRecordOfEncodedAlert: a record built around the alert's encoding,
// made once upstream, is byte for byte the record encoded whole.
func TestRecordOfEncodedAlert(t *testing.T) {
	a := testAlert(7, "cam")
	a.Text = "motion <on> \"door\" & more\u2028"
	for _, tt := range []struct {
		route  Route
		folded bool
	}{
		{Route{}, false},
		{Route{Outputs: []string{"mqtt"}}, false},
		{Route{Outputs: []string{"mqtt", "serial"}, Templates: map[string]string{"mqtt": "{base}/cams/{device}"}}, true},
	} {
		whole, err := json.Marshal(record{Version: FormatVersion, Route: tt.route, Folded: tt.folded, Alert: a})
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := json.Marshal(a)
		head, err := recordHead(tt.route, tt.folded)
		got := slices.Concat(head, enc, recordTail)
		if err != nil || !bytes.Equal(got, whole) {
			t.Errorf("route %+v folded %v:\n got %s, %v\nwant %s", tt.route, tt.folded, got, err, whole)
		}
	}
}
