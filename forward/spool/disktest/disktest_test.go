package disktest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func write(t *testing.T, path, data string, fsync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if fsync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// contents lists every file under dir with its data, and every directory.
func contents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if de.IsDir() {
			out = append(out, rel+"/")
			return nil
		}
		data, err := os.ReadFile(path)
		out = append(out, rel+"="+string(data))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestPowerCut checks the model itself: what survives is exactly what
// was fsynced, file data and directory entries apart.
func TestPowerCut(t *testing.T) {
	d, dir := Start(t)
	p := func(name string) string { return filepath.Join(dir, name) }

	write(t, p("durable"), "kept", true)
	write(t, p("unsynced-data"), "lost", false)
	write(t, p("renamed.tmp"), "moved", true)
	write(t, p("removed"), "back", true)
	if err := os.Mkdir(p("sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	syncDir(t, dir)

	// After the directory's fsync: none of these entries is durable.
	write(t, p("synced-file-only"), "no entry", true)
	if err := os.Rename(p("renamed.tmp"), p("renamed")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("removed")); err != nil {
		t.Fatal(err)
	}
	write(t, p("sub/inner"), "in a synced sub", true)
	syncDir(t, p("sub"))
	if err := os.Mkdir(p("newdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, p("newdir/x"), "dir never synced in its parent", true)
	syncDir(t, p("newdir"))
	write(t, p("durable"), "kept, then rewritten", false)

	before := contents(t, dir)
	if !slices.Contains(before, "renamed=moved") || slices.Contains(before, "removed=back") {
		t.Fatalf("before the cut the tree is as written: %q", before)
	}
	d.CutAndMount(t)

	want := []string{"durable=kept", "removed=back", "renamed.tmp=moved", "sub/", "sub/inner=in a synced sub", "unsynced-data="}
	if got := contents(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after the cut:\n got %q\nwant %q", got, want)
	}
	if s := d.Stats(); s.FileSyncs != 6 || s.DirSyncs != 3 {
		t.Errorf("stats %+v, want 6 file and 3 directory fsyncs", s)
	}

	// What is durable stays so across a second cut.
	d.CutAndMount(t)
	if got := contents(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after a second cut:\n got %q\nwant %q", got, want)
	}
}

// TestFail: a failing disk refuses every change and keeps what it had.
func TestFail(t *testing.T) {
	d, dir := Start(t)
	write(t, filepath.Join(dir, "kept"), "x", true)
	d.Fail(syscall.EROFS)
	for name, change := range map[string]func() error{
		"create": func() error { return os.WriteFile(filepath.Join(dir, "new"), []byte("y"), 0o600) },
		"write":  func() error { return os.WriteFile(filepath.Join(dir, "kept"), []byte("y"), 0o600) },
		"mkdir":  func() error { return os.Mkdir(filepath.Join(dir, "d"), 0o700) },
		"rename": func() error { return os.Rename(filepath.Join(dir, "kept"), filepath.Join(dir, "moved")) },
		"remove": func() error { return os.Remove(filepath.Join(dir, "kept")) },
	} {
		if err := change(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a failing disk: %v, want EROFS", name, err)
		}
	}
	d.Fail(0)
	if got := contents(t, dir); !slices.Equal(got, []string{"kept=x"}) {
		t.Fatalf("after the failures: %q", got)
	}
	write(t, filepath.Join(dir, "new"), "healed", true)
}
