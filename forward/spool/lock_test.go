package spool

import (
	"errors"
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
