package registry

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestSeenWritesOnlyWhatIsNew: a device's first alert, a new event type and
// a new channel are written; a repeat is not (the file, deleted behind the
// registry's back, stays gone); a reopened registry has what was written.
func TestSeenWritesOnlyWhatIsNew(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	steps := []struct {
		name   string
		device string
		s      Sighting
		want   Change
		writes bool
	}{
		{"first alert", "cam1", Sighting{Template: "hikvision", EventType: "motion"}, New, true},
		{"same again", "cam1", Sighting{Template: "hikvision", EventType: "motion"}, Known, false},
		{"new type", "cam1", Sighting{EventType: "tamper"}, Grown, true},
		{"new channel", "cam1", Sighting{EventType: "motion", Channel: "d2"}, Grown, true},
		{"channel again", "cam1", Sighting{EventType: "motion", Channel: "d2"}, Known, false},
		{"other template", "cam1", Sighting{Template: "generic", EventType: "motion"}, Known, false},
		{"other device", "ups", Sighting{Template: "generic", EventType: "on_battery"}, New, true},
		{"more specific", "ups", Sighting{Template: "apcupsd", EventType: "on_battery"}, Grown, true},
		{"less specific", "ups", Sighting{Template: "generic", EventType: "on_battery"}, Known, false},
		{"last write", "ups", Sighting{EventType: "battery_low"}, Grown, true},
	}
	for _, st := range steps {
		_ = os.Remove(path)
		got, err := r.Seen(st.device, st.s)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got != st.want {
			t.Errorf("%s: change %v, want %v", st.name, got, st.want)
		}
		_, statErr := os.Stat(path)
		if wrote := statErr == nil; wrote != st.writes {
			t.Errorf("%s: file written %v, want %v", st.name, wrote, st.writes)
		}
	}
	r2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := r2.List()
	if len(got) != 2 || got[0].Name != "cam1" || got[1].Name != "ups" {
		t.Fatalf("reopened: %+v", got)
	}
	if want := []string{"motion", "tamper"}; !reflect.DeepEqual(got[0].EventTypes, want) {
		t.Errorf("cam1 types %v, want %v", got[0].EventTypes, want)
	}
	if want := []string{"d2"}; !reflect.DeepEqual(got[0].Channels, want) || got[0].Template != "hikvision" {
		t.Errorf("cam1 = %+v", got[0])
	}
	if got[1].Template != "apcupsd" {
		t.Errorf("ups template %q, want the most specific one seen", got[1].Template)
	}
	if !got[0].LastSeen.IsZero() {
		t.Error("last_seen came back from disk: it must never be written")
	}

	if ok, err := r2.Forget("cam1"); !ok || err != nil {
		t.Fatalf("forget: %v %v", ok, err)
	}
	if ok, _ := r2.Forget("cam1"); ok {
		t.Error("forgot cam1 twice")
	}
	r3, _ := Open(dir)
	if l := r3.List(); len(l) != 1 || l[0].Name != "ups" {
		t.Errorf("after forget: %+v", l)
	}
	if c, _ := r3.Seen("cam1", Sighting{EventType: "motion"}); c != New {
		t.Errorf("a forgotten device mailing again: %v, want New", c)
	}
}

// TestSeenBounds: unsafe names are refused; channels and devices are capped.
func TestSeenBounds(t *testing.T) {
	r, _ := Open("")
	if _, err := r.Seen("../etc", Sighting{}); err == nil {
		t.Error("an unsafe name was registered")
	}
	for i := range MaxChannels + 5 {
		if _, err := r.Seen("nvr", Sighting{Channel: "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))}); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := r.Get("nvr"); len(d.Channels) != MaxChannels {
		t.Errorf("%d channels kept, want %d", len(d.Channels), MaxChannels)
	}
	for i := range MaxDevices {
		_, _ = r.Seen("d"+itoa(i), Sighting{})
	}
	if _, err := r.Seen("onetoomany", Sighting{}); !errors.Is(err, ErrFull) {
		t.Errorf("device beyond the cap: %v, want ErrFull", err)
	}
}

// TestSeenUndoesAFailedWrite: a change that could not be written is not
// kept, so the next alert tries again.
func TestSeenUndoesAFailedWrite(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	dir := t.TempDir()
	r, _ := Open(dir)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if _, err := r.Seen("cam1", Sighting{EventType: "motion"}); err == nil {
		t.Fatal("write into a read-only directory succeeded")
	}
	if len(r.List()) != 0 {
		t.Error("a device whose registration failed is listed")
	}
	_ = os.Chmod(dir, 0o700)
	if c, err := r.Seen("cam1", Sighting{EventType: "motion"}); c != New || err != nil {
		t.Errorf("retry: %v %v", c, err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}
