package classify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
	"github.com/edgesink/edgesink/sink/extract"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

var update = flag.Bool("update", false, "rewrite testdata/classify/expected.json")

// TestStage: the stage hands every alert on with the next stage's answer,
// keeps an event an earlier stage set, gives every other alert an event,
// and decides with the classifier swapped in last.
func TestStage(t *testing.T) {
	refused := errors.New("spool full")
	var got []*sink.Alert
	next := sink.HandlerFunc(func(_ context.Context, a *sink.Alert) error {
		got = append(got, a)
		if a.Subject == "refuse" {
			return refused
		}
		return nil
	})
	st := New(next, nil)
	plain := &sink.Alert{ID: "1", Subject: "Pump 2 overcurrent", Device: "plc"}
	if err := st.Handle(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	if err := st.Handle(context.Background(), &sink.Alert{ID: "2", Subject: "refuse"}); !errors.Is(err, refused) {
		t.Fatalf("the next stage's error did not come back: %v", err)
	}
	set := &sink.Event{Type: "motion", State: "start"}
	if err := st.Handle(context.Background(), &sink.Alert{ID: "3", Event: set, Device: "kept"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != plain || got[2].Event != set || got[2].Device != "kept" {
		t.Fatalf("alerts handed on: %+v", got)
	}
	if want := (sink.Event{Type: "other", State: "none", Template: "none"}); plain.Event == nil || *plain.Event != want {
		t.Errorf("unknown mail's event = %+v, want %+v", plain.Event, want)
	}
	data, _ := json.Marshal(plain)
	if !strings.Contains(string(data), `"event":{"type":"other","state":"none","template":"none"}`) {
		t.Errorf("JSON: %s", data)
	}

	c, err := Load(Config{Templates: []UserTemplate{{Name: "pump", Match: Match{Subject: "(?i)pump"}, Type: "other", State: "start"}}})
	if err != nil {
		t.Fatal(err)
	}
	st.Swap(c)
	again := &sink.Alert{ID: "4", Subject: "Pump 2 overcurrent"}
	_ = st.Handle(context.Background(), again)
	if again.Event.Template != "pump" || again.Event.State != "start" {
		t.Errorf("after Swap: %+v", again.Event)
	}
}

// sample is one mail under testdata/ and the alert extraction makes of it.
func sample(t testing.TB, path string) *sink.Alert {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := extract.Extract(raw, extract.Envelope{ReceivedAt: time.Unix(0, 0), RemoteAddr: "192.168.1.23:40211", RcptTo: []string{"alerts@edgesink.lan"}})
	if err != nil && !errors.Is(err, extract.ErrNoContent) {
		t.Fatal(err)
	}
	return a
}

func sampleFiles(t testing.TB) []string {
	var files []string
	for _, dir := range []string{"classify", "corpus", "mail"} {
		fs, _ := filepath.Glob(filepath.Join("../../testdata", dir, "*.eml"))
		files = append(files, fs...)
	}
	if len(files) < 40 {
		t.Fatalf("samples missing: %d", len(files))
	}
	return files
}

// TestGolden classifies every sample mail (testdata/classify, the corpus,
// testdata/mail) with the built-in templates and holds the events to
// testdata/classify/expected.json (-update rewrites it; review the diff).
func TestGolden(t *testing.T) {
	got := map[string]*sink.Event{}
	for _, f := range sampleFiles(t) {
		got[filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f)] = Builtin().Event(sample(t, f))
	}
	path := "../../testdata/classify/expected.json"
	if *update {
		data, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	var want map[string]*sink.Event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: in expected.json, no such sample", name)
		} else if *g != *w {
			t.Errorf("%s:\n got %+v\nwant %+v", name, *g, *w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: not in expected.json (run with -update)", name)
		}
	}

	// Every built-in template is shown its own mail.
	for _, bt := range BuiltinTemplates() {
		if !slices.ContainsFunc(slices.Collect(mapValues(want)), func(e *sink.Event) bool { return e.Template == bt.Name }) {
			t.Errorf("built-in template %s: no sample classifies as it", bt.Name)
		}
	}
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// TestCorpus holds the four corpus devices to the events the issue asks
// for, written here by hand so that -update cannot re-pin them.
func TestCorpus(t *testing.T) {
	for file, want := range map[string]sink.Event{
		"hikvision-motion.eml":  {Type: "motion", State: "start", Channel: "D1", Camera: "Garage", Template: "hikvision-nvr"},
		"apc-ups-onbattery.eml": {Type: "on_battery", State: "start", Template: "apc-nmc"},
		"synology-volume.eml":   {Type: "disk_full", State: "none", Camera: "DiskStation", Template: "synology"},
		"hp-printer-toner.eml":  {Type: "toner_low", State: "none", Camera: "HP LaserJet M404dn", Template: "hp"},
	} {
		if got := Builtin().Event(sample(t, "../../testdata/corpus/"+file)); *got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", file, *got, want)
		}
	}
}

// TestBuiltinData: the vocabulary is closed, every template is described
// for the README, names are unique, and every expression compiles (they
// are compiled on first use).
func TestBuiltinData(t *testing.T) {
	for _, mt := range allMatchers() {
		if _, err := regexp.Compile(mt.expr); err != nil {
			t.Error(err)
		}
	}
	seen := map[string]bool{}
	for _, bt := range BuiltinTemplates() {
		if bt.Vendor == "" || bt.Recognises == "" {
			t.Errorf("%s: vendor and recognises must be set", bt.Name)
		}
		if seen[bt.Name] {
			t.Errorf("%s twice", bt.Name)
		}
		seen[bt.Name] = true
	}
	if last := BuiltinTemplates()[len(BuiltinTemplates())-1]; last.Name != "generic" {
		t.Errorf("the keyword fallback must be tried last, not %s", last.Name)
	}
	if len(Types) != 19 || !IsType("volume_degraded") || IsType("person") {
		t.Errorf("vocabulary: %v", Types)
	}
}

// TestUserTemplates: a user's template wins over the built-in ones, named
// groups fill channel, camera, detail and state, and every field can be
// matched.
func TestUserTemplates(t *testing.T) {
	hik := &sink.Alert{Device: "cam-garage", MailFrom: "cam-garage@cams.lan", From: []string{"cam-garage@cams.lan"},
		RcptTo: []string{"alerts@edgesink.lan"}, To: []string{"ops@edgesink.lan"},
		Subject: "Motion Detection Alarm", Text: "EVENT TYPE:    Motion Detection\nCAMERA NAME(NUM):   Garage(D1)\n"}
	gate := &sink.Alert{Device: "gate", MailFrom: "gate@iot.lan", Subject: "Gate 3 opened by Anna", Text: "state: OPEN  "}
	tests := []struct {
		name  string
		tmpl  UserTemplate
		alert *sink.Alert
		want  sink.Event
	}{
		{"wins over built-in", UserTemplate{Name: "mine", Match: Match{Subject: "Motion"}, Type: "intrusion", State: "none"},
			hik, sink.Event{Type: "intrusion", State: "none", Template: "mine"}},
		{"named groups", UserTemplate{Name: "gate", Match: Match{Subject: `Gate (?P<channel>\d+) (?P<state>opened|closed) by (?P<detail>\w+)`, Body: `state:\s*(?P<camera>\w+)`}, Type: "door", State: "none"},
			gate, sink.Event{Type: "door", State: "start", Channel: "3", Camera: "OPEN", Detail: "anna", Template: "gate"}},
		{"state word maps", UserTemplate{Name: "gate", Match: Match{Subject: `Gate \d+ (?P<state>closed|opened)`}, Type: "door", State: "stop"},
			gate, sink.Event{Type: "door", State: "start", Template: "gate"}},
		{"sender", UserTemplate{Name: "by-sender", Match: Match{Sender: `^gate@`}, Type: "door", State: "start"},
			gate, sink.Event{Type: "door", State: "start", Template: "by-sender"}},
		{"recipient (To header)", UserTemplate{Name: "r", Match: Match{Recipient: `^ops@`}, Type: "test", State: "none"},
			hik, sink.Event{Type: "test", State: "none", Template: "r"}},
		{"device", UserTemplate{Name: "d", Match: Match{Device: `^cam-`}, Type: "tamper", State: "start", Detail: "Person"},
			hik, sink.Event{Type: "tamper", State: "start", Detail: "person", Template: "d"}},
		{"text", UserTemplate{Name: "t", Match: Match{Text: `Alarm\nEVENT`}, Type: "motion", State: "start"},
			hik, sink.Event{Type: "motion", State: "start", Template: "t"}},
		{"all must match", UserTemplate{Name: "no", Match: Match{Subject: "Motion", Sender: "^nobody@"}, Type: "test", State: "none"},
			hik, sink.Event{Type: "motion", State: "start", Channel: "D1", Camera: "Garage", Template: "generic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(Config{Templates: []UserTemplate{tt.tmpl}})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Event(tt.alert); *got != tt.want {
				t.Errorf("got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

// TestDevices: the first entry of the devices map that matches names the
// device, carries its display name and may fix its template.
func TestDevices(t *testing.T) {
	devices := []Device{
		{Name: "garage", IP: netip.MustParsePrefix("192.168.1.23/32"), DisplayName: "  Garage   camera ", Template: "dahua"},
		{Name: "lan-cam", IP: netip.MustParsePrefix("192.168.1.0/24"), Helo: "IPC"},
		{Name: "ups", AuthUser: "UPS1"},
		{Name: "by-helo", Helo: "ds-7608ni"},
		{Name: "by-sender", Sender: "@cams.lan"},
		{Name: "by-from", From: "printer@office.lan"},
	}
	c, err := Load(Config{Devices: devices})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		alert                sink.Alert
		device, display, tpl string
	}{
		{"ip, fixed template even without its marker", sink.Alert{RemoteAddr: "192.168.1.23:1234", Device: "x", Text: "Alarm Event: Motion Detection"}, "garage", "Garage camera", "dahua"},
		{"network and helo", sink.Alert{RemoteAddr: "192.168.1.40:1234", Helo: "ipc", Device: "x"}, "lan-cam", "", "none"},
		{"network without helo: next", sink.Alert{RemoteAddr: "192.168.1.40:1234", AuthUser: "ups1", Device: "x"}, "ups", "", "none"},
		{"helo", sink.Alert{RemoteAddr: "10.0.0.1:25", Helo: "DS-7608NI", Device: "x"}, "by-helo", "", "none"},
		{"envelope sender domain", sink.Alert{RemoteAddr: "[::1]:25", MailFrom: "<Cam7@CAMS.lan>", Device: "x"}, "by-sender", "", "none"},
		{"from header", sink.Alert{From: []string{"printer@office.lan"}, Device: "x"}, "by-from", "", "none"},
		{"none: extraction's name stands", sink.Alert{RemoteAddr: "10.0.0.1:25", MailFrom: "a@b.lan", Device: "a"}, "a", "", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.alert
			c.Apply(&a)
			if a.Device != tt.device || a.DisplayName != tt.display || a.Event.Template != tt.tpl {
				t.Errorf("device %q display %q template %q, want %q %q %q", a.Device, a.DisplayName, a.Event.Template, tt.device, tt.display, tt.tpl)
			}
		})
	}
	a := sink.Alert{RemoteAddr: "192.168.1.23:1234", Text: "Alarm Event: Motion Detection Stop\nAlarm Input Channel: 2\n"}
	c.Apply(&a)
	if want := (sink.Event{Type: "motion", State: "stop", Channel: "2", Template: "dahua"}); *a.Event != want {
		t.Errorf("fixed template: %+v, want %+v", *a.Event, want)
	}
}

// TestLoadErrors: what check-config refuses, with the key at fault.
func TestLoadErrors(t *testing.T) {
	ok := UserTemplate{Name: "ok", Match: Match{Subject: "x"}, Type: "motion", State: "start"}
	with := func(f func(*UserTemplate)) Config {
		u := ok
		f(&u)
		return Config{Templates: []UserTemplate{ok, u}}
	}
	tests := []struct {
		name string
		cfg  Config
		key  string
	}{
		{"bad regexp", with(func(u *UserTemplate) { u.Name, u.Body = "b", "(unclosed" }), "templates.1.body"},
		{"unknown group", with(func(u *UserTemplate) { u.Name, u.Subject = "b", "(?P<zone>x)" }), "templates.1.subject"},
		{"bad type", with(func(u *UserTemplate) { u.Name, u.Type = "b", "person" }), "templates.1.type"},
		{"bad state", with(func(u *UserTemplate) { u.Name, u.State = "b", "begin" }), "templates.1.state"},
		{"duplicate name", with(func(u *UserTemplate) {}), "templates.1.name"},
		{"bad name", with(func(u *UserTemplate) { u.Name = "My Gate" }), "templates.1.name"},
		{"matches everything", with(func(u *UserTemplate) { u.Name, u.Subject = "b", "" }), "templates.1"},
		{"device without match", Config{Devices: []Device{{Name: "cam"}}}, "devices.0"},
		{"device bad name", Config{Devices: []Device{{Name: "Cam 1", Helo: "x"}}}, "devices.0.name"},
		{"device unknown template", Config{Devices: []Device{{Name: "cam", Helo: "x", Template: "hikvison"}}}, "devices.0.template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.cfg)
			var ke *config.KeyError
			if !errors.As(err, &ke) || ke.Key != tt.key {
				t.Fatalf("error %v, want one for key %s", err, tt.key)
			}
		})
	}
	// A device may fix a user template too.
	if _, err := Load(Config{Templates: []UserTemplate{ok}, Devices: []Device{{Name: "cam", Helo: "x", Template: "ok"}}}); err != nil {
		t.Error(err)
	}
}

// TestCleanValue: padded and hostile captures come out short, trimmed and
// valid UTF-8.
func TestCleanValue(t *testing.T) {
	for in, want := range map[string]string{
		"   Front    Yard   ":          "Front Yard",
		"a\x00b\tc\r\n":                "a b c",
		"\xff\xfeGarage":               "Garage",
		strings.Repeat("é", 40):        strings.Repeat("é", 32),
		"":                             "",
		strings.Repeat("ab ", 30) + "": strings.TrimSpace(strings.Repeat("ab ", 21)) + " a",
	} {
		got := cleanValue(in)
		if got != want || len(got) > maxValue || !utf8.ValidString(got) {
			t.Errorf("cleanValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzClassify: no mail makes the classifier panic, and what it returns is
// always from the vocabulary, valid UTF-8 and bounded.
func FuzzClassify(f *testing.F) {
	for _, file := range sampleFiles(f) {
		raw, _ := os.ReadFile(file)
		f.Add(string(raw), "", "")
	}
	f.Add("Alarm Event: Motion Detection Start\nAlarm Input Channel: \xff\xff", "IPC Message", "ipc@cams.lan")
	c, err := Load(Config{Templates: []UserTemplate{{Name: "u", Match: Match{Text: `(?P<camera>\S+)\((?P<channel>[^)]*)\)`}, Type: "motion", State: "start"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, subject, from string) {
		// Every expression on every input is the expensive part: 1 KiB
		// is enough to tempt the literal logic.
		in := subject + "\n" + body
		checkPrefilter(t, in[:min(len(in), 1<<10)])
		for _, cl := range []*Classifier{Builtin(), c} {
			a := &sink.Alert{Subject: subject, Text: body, HTML: body, MailFrom: from, From: []string{from}, Device: "d"}
			cl.Apply(a)
			ev := a.Event
			if ev == nil || !IsType(ev.Type) || !slices.Contains(States, ev.State) || ev.Template == "" {
				t.Fatalf("event %+v", ev)
			}
			for _, v := range []string{ev.Channel, ev.Camera, ev.Detail} {
				if len(v) > maxValue+10 || !utf8.ValidString(v) || strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("value %q", v)
				}
			}
		}
	})
}

// allMatchers is every expression of the built-in templates.
func allMatchers() []matcher {
	var out []matcher
	for _, tp := range builtinTemplates() {
		out = append(out, tp.match...)
		for _, r := range tp.rules {
			out = append(out, r.match...)
		}
		for _, x := range tp.extract {
			out = append(out, x...)
		}
	}
	return out
}

// checkPrefilter: the literal prefilter never turns away a string its
// expression matches; and the one scan of a mail's text (its first line
// the subject) answers as a search for each literal would.
func checkPrefilter(t *testing.T, s string) {
	t.Helper()
	low := lowerASCII(s)
	subject, body, _ := strings.Cut(s, "\n")
	m := newMail(&sink.Alert{Subject: subject, Text: body, HTML: body}, builtinIndex())
	defer m.release()
	fields := map[field]string{fieldSubject: lowerASCII(m.subject), fieldBody: lowerASCII(m.body), fieldText: lowerASCII(string(m.textBytes()))}
	for _, mt := range allMatchers() {
		if mt.re().MatchString(s) && !mt.maybe(low) {
			t.Fatalf("prefilter %q rejects a match of %s in %q", mt.need, mt.expr, s)
		}
		if mt.ids == nil {
			continue
		}
		for f, v := range fields {
			if m.literals(f).all(mt.ids) != mt.maybe(v) {
				t.Fatalf("the scan of field %d changes the prefilter %q on %q", f, mt.need, s)
			}
		}
		// Run from the first of its prefix literals, an expression finds
		// what it finds in the whole field.
		for f, v := range map[field]string{fieldSubject: m.subject, fieldBody: m.body, fieldText: string(m.textBytes())} {
			from := m.from(f, &mt)
			if from == 0 {
				continue
			}
			whole, part := mt.re().FindStringSubmatchIndex(v), mt.re().FindStringSubmatchIndex(v[from:])
			for i := range part {
				if part[i] >= 0 {
					part[i] += from
				}
			}
			if !slices.Equal(whole, part) {
				t.Fatalf("%s on field %d run from %d (prefix %q): %v, want %v, in %q", mt.expr, f, from, mt.prefix, part, whole, v)
			}
		}
	}
}

// TestPrefilter: on every sample and on strings made to tempt it, the
// prefilter only ever rejects what the expression rejects; and it does
// reject most of what it sees (else it is no use).
func TestPrefilter(t *testing.T) {
	inputs := []string{"\u212Aelvin \u017Fynology SYNOLOGY", "EVENT TYPE: Motion Detection", "Alarm Event: Tripwire End\n",
		"Subject\nXmotion, then a motion; xUPS x on battery, UPS y on battery"} // a word character before a literal \b wants
	for _, f := range sampleFiles(t) {
		m := newMail(sample(t, f), builtinIndex())
		inputs = append(inputs, string(m.textBytes()))
		m.release()
	}
	for _, in := range inputs {
		checkPrefilter(t, in)
	}
	with, total := 0, 0
	for _, mt := range allMatchers() {
		total++
		if mt.lits != nil {
			with++
		}
	}
	if with*10 < total*8 {
		t.Errorf("only %d of %d expressions have a literal prefilter", with, total)
	}
	for expr, want := range map[string]string{
		`(?i)EVENT TYPE:\s*(?:Motion|VMD)`:                        "event type:",
		`(?P<camera>(?:HP )?(?:Color )?(?:LaserJet|DeskJet) \d+)`: "hp  color  laserjet deskjet",
		`(?i)\bUPS x`:               "ups x (back)",
		`(?i)(?:abc)?\bdef`:         "abc def (back)",
		`(?i)(?:DVR|NVR) NAME:|IPC`: "dvr nvr ipc",
		`(?i)^abc|def`:              "",
		`x*abc`:                     "",
	} {
		p, _ := syntax.Parse(expr, syntax.Perl)
		set, back := prefixLiterals(p.Simplify())
		if got := strings.Join(set, " ") + map[bool]string{true: " (back)"}[back]; got != want {
			t.Errorf("prefixLiterals(%q) = %q, want %q", expr, got, want)
		}
	}
	for expr, want := range map[string]string{
		`(?i)synology|diskstation`:          "synology diskstation",
		`(?i)digital input|input port|I/O`:  "digital input|input port|i/o",
		`\bDegradedArray\b`:                 "degradedarray",
		`(?i)\b(?:HL-|MFC-)[A-Z]{0,2}\d{3}`: "hl- mfc-",
		`(?i)a|b`:                           "",
		`(?i)x*`:                            "",
	} {
		got := strings.Join(requiredLiterals(expr), " ")
		if strings.Contains(want, "|") {
			got = strings.Join(requiredLiterals(expr), "|")
		}
		if got != want {
			t.Errorf("requiredLiterals(%q) = %q, want %q", expr, got, want)
		}
	}
}

// BenchmarkClassify is the classifier's cost per mail: make bench's 4 KiB
// load mail (no template knows it: the keyword fallback's every rule is
// tried), three corpus mails that templates do know, and every sample in
// turn; compare with BenchmarkExtract, the extraction of the same mails.
func BenchmarkClassify(b *testing.B) {
	_, load := smtptest.AlertMail(1, 4<<10)
	loadAlert, err := extract.Extract(load, extract.Envelope{ReceivedAt: time.Unix(0, 0), RemoteAddr: "192.168.1.23:40211",
		MailFrom: "load@cams.lan", RcptTo: []string{"alerts@edgesink.lan"}})
	if err != nil {
		b.Fatal(err)
	}
	var all []*sink.Alert
	for _, f := range sampleFiles(b) {
		all = append(all, sample(b, f))
	}
	c := Builtin()
	for _, bc := range []struct {
		name   string
		alerts []*sink.Alert
	}{
		{"load-4KiB", []*sink.Alert{loadAlert}},
		{"hikvision-motion", []*sink.Alert{sample(b, "../../testdata/corpus/hikvision-motion.eml")}},
		{"synology-volume", []*sink.Alert{sample(b, "../../testdata/corpus/synology-volume.eml")}},
		{"hp-printer-toner", []*sink.Alert{sample(b, "../../testdata/corpus/hp-printer-toner.eml")}},
		{"samples", all},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuTime()
			i := 0
			for b.Loop() {
				a := *bc.alerts[i%len(bc.alerts)]
				c.Apply(&a)
				i++
			}
			// On a shared machine the process's CPU time, garbage
			// collection included, is steadier than ns/op.
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the user and system time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkExtract(b *testing.B) {
	var raws [][]byte
	for _, f := range sampleFiles(b) {
		raw, _ := os.ReadFile(f)
		raws = append(raws, raw)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = extract.Extract(raws[i%len(raws)], extract.Envelope{ReceivedAt: time.Unix(0, 0)})
	}
}

// hostile are mails made to be slow for the templates' expressions:
// repeated keywords, unbalanced brackets, long lines.
func hostile() []*sink.Alert {
	var out []*sink.Alert
	for _, unit := range []string{"a", " ", "Alarm Event: Motion\n", "EVENT TYPE: ", "Garage(", "UPS x ", "toner ", "disk ", "degraded volume ", "(D1"} {
		body := strings.Repeat(unit, (64<<10)/len(unit))
		out = append(out, &sink.Alert{Subject: body[:8<<10], Text: body, MailFrom: "x@y", Device: "x"},
			&sink.Alert{Subject: "IPC Message", Text: "automatically generated e-mail from your NVR\n" + body, Device: "x"})
	}
	return out
}

// BenchmarkClassifyHostile is the classifier's cost per crafted mail (64
// KiB bodies, 8 KiB subjects); compare with BenchmarkClassify.
func BenchmarkClassifyHostile(b *testing.B) {
	alerts := hostile()
	c := Builtin()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := *alerts[i%len(alerts)]
		c.Apply(&a)
	}
}

// TestREADMEListsTemplates: README's table of built-in templates names
// every one of them, in the order they are tried.
func TestREADMEListsTemplates(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for _, bt := range BuiltinTemplates() {
		i := strings.Index(string(data), "| `"+bt.Name+"` | ")
		if i < 0 {
			t.Errorf("README's template table lacks %s", bt.Name)
			continue
		}
		if i < last {
			t.Errorf("README lists %s out of order", bt.Name)
		}
		last = i
	}
}

// TestStageConcurrent: alerts are classified while the classifier is
// swapped, and lazily compiled expressions are first used, from many
// goroutines at once (run with -race).
func TestStageConcurrent(t *testing.T) {
	st := New(sink.HandlerFunc(func(context.Context, *sink.Alert) error { return nil }), nil)
	var alerts []*sink.Alert
	for _, f := range sampleFiles(t) {
		alerts = append(alerts, sample(t, f))
	}
	c, err := Load(Config{Devices: []Device{{Name: "all", IP: netip.MustParsePrefix("192.168.1.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, a := range alerts {
				cp := *a
				if err := st.Handle(context.Background(), &cp); err != nil || cp.Event == nil {
					t.Errorf("handle: %v %+v", err, cp.Event)
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		st.Swap(c)
		st.Swap(nil)
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// TestLowerInto: the copy lower-cased eight bytes at a time is
// lowerASCII's, at every alignment and next to every byte value.
func TestLowerInto(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c), 'A'+byte(c)%26, 'z')
	}
	for _, s := range []string{"", "ABC", "Hello, WORLD@[`{", string(all), "\u212Aelvin \u017Fynology SYNOLOGY 0123456789ABCDEF", strings.Repeat("Zz@[`{AaÉé", 9)} {
		for i := 0; i <= min(len(s), 9); i++ {
			if got, want := string(lowerInto([]byte("x"), s[i:])), "x"+lowerASCII(s[i:]); got != want {
				t.Fatalf("lowerInto(%q):\n got %q\nwant %q", s[i:], got, want)
			}
		}
	}
}

// TestScanFields: one scan of the text tells the subject's literals from
// the body's, a literal across the line between them being the text's
// only, and where each is first seen.
func TestScanFields(t *testing.T) {
	x := newLitIndex()
	ids := map[string]int32{}
	for _, l := range []string{"ject\nbo", "sub", "body", "bod", "xyz", "ect"} {
		ids[l] = x.add(l)
	}
	x.build()
	m := newMail(&sink.Alert{Subject: "SubJECT", Text: "Body bod body"}, x)
	defer m.release()
	for f, want := range map[field]string{fieldSubject: "sub ect", fieldBody: "body bod", fieldText: "ject\nbo sub body bod ect"} {
		var got []string
		for _, l := range x.lits {
			if m.literals(f).has(ids[l]) {
				got = append(got, l)
			}
		}
		slices.Sort(got)
		w := strings.Fields(strings.ReplaceAll(want, "\n", "|"))
		for i := range w {
			w[i] = strings.ReplaceAll(w[i], "|", "\n")
		}
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("field %d: %q, want %q", f, got, w)
		}
	}
	if at := m.from(fieldBody, &matcher{pre: []int32{ids["bod"], ids["xyz"]}}); at != 0 {
		t.Errorf("body: bod first at %d, want 0", at)
	}
	if at := m.from(fieldText, &matcher{pre: []int32{ids["body"], ids["ect"]}}); at != 4 {
		t.Errorf("text: ect first at %d, want 4", at)
	}
	if at := m.from(fieldText, &matcher{pre: []int32{ids["bod"]}}); at != 8 {
		t.Errorf("text: bod first at %d, want 8", at)
	}
	if at := m.from(fieldText, &matcher{pre: []int32{ids["bod"]}, back: true}); at != 7 {
		t.Errorf("text: a byte before bod at %d, want 7", at)
	}
}
