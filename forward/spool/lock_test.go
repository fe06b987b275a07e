package spool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestLock: one holder at a time, its PID in the file, the PID known to
// Holder while held and forgotten once released; a second claim (even from
// the same process: flock is per open file) names the holder.
func TestLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool") // created by AcquireLock
	if pid, err := Holder(dir); err != nil || pid != 0 {
		t.Fatalf("Holder before any lock = %d, %v; want 0", pid, err)
	}
	l, err := AcquireLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, LockName))
	if want := strconv.Itoa(os.Getpid()) + "\n"; err != nil || string(data) != want {
		t.Errorf("lock file holds %q (%v), want %q", data, err, want)
	}
	_, err = AcquireLock(dir)
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || !errors.Is(err, ErrLocked) {
		t.Fatalf("second AcquireLock = %v, want a LockedError naming pid %d", err, os.Getpid())
	}
	if pid, err := Holder(dir); err != nil || pid != os.Getpid() {
		t.Errorf("Holder while locked = %d, %v; want %d", pid, err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if pid, err := Holder(dir); err != nil || pid != 0 {
		t.Errorf("Holder after Close = %d, %v; want 0 (the file names a process that no longer holds it)", pid, err)
	}
	l2, err := AcquireLock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Close()
}

// TestHolderStale: a lock file left by a process that has ended, read with
// and without /proc/locks, names no holder.
func TestHolderStale(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	tests := []struct {
		name, content, procLocks string
		want                     int
	}{
		{"dead pid, /proc/locks", strconv.Itoa(dead) + "\n", "/proc/locks", 0},
		{"dead pid, no /proc/locks", strconv.Itoa(dead) + "\n", "/nonexistent", 0},
		{"live pid without the lock", strconv.Itoa(os.Getpid()) + "\n", "/proc/locks", 0},
		{"live pid, no /proc/locks: trusted", strconv.Itoa(os.Getpid()) + "\n", "/nonexistent", os.Getpid()},
		{"empty file", "", "/proc/locks", 0},
		{"garbage", "x\n", "/proc/locks", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, LockName), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if pid, err := holder(dir, tt.procLocks); err != nil || pid != tt.want {
				t.Errorf("holder = %d, %v; want %d", pid, err, tt.want)
			}
		})
	}
}

// TestListMissing: a spool that does not exist yet lists as empty and is
// not created by listing it.
func TestListMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	items, err := List(dir)
	if err != nil || len(items) != 0 {
		t.Errorf("List = %v, %v; want nothing, no error", items, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("List created %s (%v)", dir, err)
	}
}

// TestRootWritesAsDirOwner: run as root in a directory another user owns
// (the service's spool), the lock file and files written durably belong to
// that user, so the service can open them.
func TestRootWritesAsDirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs the tests as root; this one needs it")
		}
		t.Skip("needs root")
	}
	const uid, gid = 4242, 4243 // no such user needed: ids are numbers
	dir := t.TempDir()
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := writeFileSync(filepath.Join(dir, "x.json"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LockName, "x.json"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, uid, gid)
		}
	}
}

// TestUnreadableQueueFileHeld: a queue file that cannot be read (here a
// symlink loop, unreadable for root too) neither fails Open nor Rescan: it
// is moved to dead/ as held, the rest is delivered, and List shows it.
func TestUnreadableQueueFileHeld(t *testing.T) {
	dir := t.TempDir()
	out := &fakeOutput{name: "out"}
	for _, name := range []string{"", "more"} {
		t.Run("at "+map[string]string{"": "start", "more": "rescan"}[name], func(t *testing.T) {
			bad := "0000000000000000000000a" + fmt.Sprint(len(name)) + ".json"
			queue := filepath.Join(dir, queueDir)
			os.MkdirAll(queue, 0o700)
			var s *Spool
			if name == "" {
				if err := os.Symlink(bad, filepath.Join(queue, bad)); err != nil {
					t.Fatal(err)
				}
				s = open(t, Config{Dir: dir}, out)
			} else {
				s = open(t, Config{Dir: dir}, out)
				if err := os.Symlink(bad, filepath.Join(queue, bad)); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Rescan(); err != nil {
					t.Fatalf("Rescan: %v", err)
				}
			}
			handle(t, s, testAlert(1, "cam"))
			drain(t, s)
			if _, err := os.Lstat(filepath.Join(dir, deadDir, bad+heldExt)); err != nil {
				t.Errorf("unreadable file not held in dead/: %v", err)
			}
			items, err := List(dir)
			if err != nil || len(items) != 1 || items[0].State != "held" {
				t.Errorf("List = %+v, %v; want the held file", items, err)
			}
			s.Close()
			os.Remove(filepath.Join(dir, deadDir, bad+heldExt))
		})
	}
}
