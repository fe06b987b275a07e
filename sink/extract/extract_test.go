package extract

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgesink/edgesink/sink"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

var testEnvelope = Envelope{
	ReceivedAt: time.Date(2026, 11, 21, 3, 14, 7, 0, time.UTC),
	RemoteAddr: "192.0.2.10:40000",
	Helo:       "device.lan",
	MailFrom:   "device@devices.lan",
	RcptTo:     []string{"alerts@edgesink.lan"},
}

func sampleFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("../../testdata/*/*.eml")
	if err != nil || len(files) < 10 {
		t.Fatalf("sample mails missing under ../../testdata: %v (%d found)", err, len(files))
	}
	return files
}

// TestExtractGolden pins the whole alert for every sample mail. Run with
// -update after an intended change and review the diff.
func TestExtractGolden(t *testing.T) {
	for _, file := range sampleFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Extract(raw, testEnvelope)
			if err != nil && !errors.Is(err, ErrNoContent) {
				t.Fatalf("Extract: %v", err)
			}
			if len(a.ID) != 24 {
				t.Errorf("id %q: want 24 hex characters", a.ID)
			}
			a.ID = "" // random part
			got, _ := json.MarshalIndent(a, "", "  ")
			got = append(got, '\n')
			golden := filepath.Join("..", "..", "testdata", "golden", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test ./sink/extract -run Golden -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("alert differs from %s\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestExtractNasty states in words what the golden files pin for the
// hand-made malformed samples.
func TestExtractNasty(t *testing.T) {
	tests := []struct {
		file         string
		subject      string
		textContains string
		attachments  int
		parseErrors  bool
		err          error
	}{
		{"raw-8bit-headers", "Détection de mouvement à l'entrée", "Mouvement détecté sur la caméra Entrée.", 0, true, nil},
		{"unknown-charset", "Zone 3 Alarm", "Zone 3 « Garage »: alarm triggered", 0, true, nil},
		{"japanese-charsets", "温度警告", "ディスク温度が高すぎます: 61°C", 0, false, nil},
		{"broken-multipart", "Video loss", "Video loss on channel 4.", 1, true, nil},
		{"bare-lf", "Pump 2 overcurrent", ".leading dot line must survive", 0, false, nil},
		{"no-headers", "", "Input voltage lost, running on battery.", 0, true, nil},
		{"missing-headers", "Door open", "Rear door has been open for 5 minutes.", 0, false, nil},
		{"html-windows-1252", "Paper jam – tray 2", "“Paper jam” in tray 2 – open door B.", 0, false, nil},
		{"inline-image", "Someone at the door", "Visitor detected", 1, false, nil},
		{"undeclared-8bit", "Panne", "Panne de courant détectée à l'entrée du bâtiment", 0, true, nil},
		{"empty", "", "", 0, false, ErrNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("../../testdata/mail", tt.file+".eml"))
			if err != nil {
				t.Fatal(err)
			}
			a, err := Extract(raw, testEnvelope)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if a.Subject != tt.subject {
				t.Errorf("subject = %q, want %q", a.Subject, tt.subject)
			}
			if !strings.Contains(a.Text, tt.textContains) {
				t.Errorf("text %q does not contain %q", a.Text, tt.textContains)
			}
			if len(a.Attachments) != tt.attachments {
				t.Errorf("%d attachments, want %d", len(a.Attachments), tt.attachments)
			}
			if (len(a.ParseErrors) > 0) != tt.parseErrors {
				t.Errorf("parse errors = %q, want some: %v", a.ParseErrors, tt.parseErrors)
			}
			assertValidUTF8(t, a)
		})
	}
}

// TestWindows1252FallbackNoted: text whose charset is not declared (or not
// known) is read as Windows-1252, and parse_errors says which field was
// read so; declared, known charsets give no such note.
func TestWindows1252FallbackNoted(t *testing.T) {
	for file, want := range map[string][]string{
		"raw-8bit-headers":  {"Subject: 8-bit text without a known charset, read as Windows-1252", "From: 8-bit text without a known charset, read as Windows-1252"},
		"undeclared-8bit":   {"text/plain part: 8-bit text without a declared charset, read as Windows-1252"},
		"unknown-charset":   {`Subject: unknown charset "x-vendor-legacy", read as Windows-1252`, "text: 8-bit text without a known charset, read as Windows-1252"},
		"html-windows-1252": nil,
		"japanese-charsets": nil,
		"bare-lf":           nil,
	} {
		raw, err := os.ReadFile(filepath.Join("../../testdata/mail", file+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := Extract(raw, testEnvelope)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var notes []string
		for _, pe := range a.ParseErrors {
			if strings.Contains(pe, "Windows-1252") {
				notes = append(notes, pe)
			}
		}
		if !slices.Equal(notes, want) {
			t.Errorf("%s: Windows-1252 notes %q, want %q", file, notes, want)
		}
	}
}

func TestToUTF8(t *testing.T) {
	tests := map[string]string{
		"plain":          "plain",
		"caf\xe9":        "café",
		"\x93quoted\x94": "“quoted”",
		"ok ✓":           "ok ✓",
		"\xff\xfe":       "ÿþ",
	}
	for in, want := range tests {
		if got := toUTF8(in); got != want {
			t.Errorf("toUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

// assertValidUTF8 walks every string in the alert.
func assertValidUTF8(t testing.TB, a *sink.Alert) {
	t.Helper()
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.String:
			if !utf8.ValidString(v.String()) {
				t.Errorf("%s is not valid UTF-8: %q", path, v.String())
			}
		case reflect.Ptr:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path+"[]")
			}
		}
	}
	walk(reflect.ValueOf(a), "alert")
}

// FuzzExtract: whatever bytes a device sends, extraction never panics, every
// string is valid UTF-8 and the bounds hold.
func FuzzExtract(f *testing.F) {
	for _, file := range sampleFiles(f) {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte("Subject: =?utf-8?B?////?=\r\n\r\n\xff\xfe"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := Extract(raw, testEnvelope)
		if err != nil && !errors.Is(err, ErrNoContent) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if a == nil {
			t.Fatal("nil alert")
		}
		assertValidUTF8(t, a)
		if len(a.ParseErrors) > maxParseErrors {
			t.Fatalf("%d parse errors, bound is %d", len(a.ParseErrors), maxParseErrors)
		}
		if a.Size != len(raw) || len(a.Device) == 0 || len(a.Device) > sink.MaxDeviceLen {
			t.Fatalf("size %d / device %q out of bounds", a.Size, a.Device)
		}
		if strings.ContainsAny(a.Subject, "\r\n\x00") {
			t.Fatalf("subject has control characters: %q", a.Subject)
		}
	})
}
