package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockName is the lock file's name in the directory it guards: the spool
// directory in disk mode, else the state directory.
const LockName = "lock"

// Lock is one edgesink's claim on a spool: an flock(2) held on
// <dir>/lock for the life of the process, the file holding the holder's PID
// as decimal text and a newline. The kernel drops the lock when the process
// ends, however it ends, so a stale file never blocks a start. Only the
// service takes it; operator commands read the PID with Holder and never
// lock.
type Lock struct {
	f    *os.File
	path string
}

// LockedError says another process holds the lock. PID is 0 when it could
// not be read.
type LockedError struct {
	Path string
	PID  int
}

func (e *LockedError) Error() string {
	who := "another edgesink"
	if e.PID > 0 {
		who = fmt.Sprintf("another edgesink (pid %d)", e.PID)
	}
	return fmt.Sprintf("spool: %s holds %s", who, e.Path)
}

// Unwrap lets errors.Is(err, ErrLocked) match.
func (e *LockedError) Unwrap() error { return ErrLocked }

// ErrLocked is wrapped by the error AcquireLock returns when another
// process holds the lock.
var ErrLocked = errors.New("spool: locked by another process")

// AcquireLock takes dir's lock without waiting, creating dir (0700) and the
// lock file as needed. It fails with a *LockedError naming the holder's PID
// when another process has it. Run as root in a directory another user
// owns (the service's), the lock file is given to that owner, so the
// service can still open it.
func AcquireLock(dir string) (*Lock, error) {
	// Durably: this is usually the spool directory's first creation, and
	// alerts written into it must not vanish with it at a power cut.
	if err := mkdirAllSync(dir); err != nil {
		return nil, fmt.Errorf("spool: lock: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Path: path, PID: lockedPID(path)}
		}
		return nil, fmt.Errorf("spool: lock %s: %w", path, err)
	}
	if err := giveToDirOwner(f, dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: lock: write pid to %s: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// Close releases the lock. The file stays: removing it would let two
// processes lock two different files of the same name. Safe to call twice.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// lockedPID reads the holder's PID. The holder writes it right after
// locking, so a contender that comes in between may briefly find the file
// empty: it looks again for a moment before giving up (0).
func lockedPID(path string) int {
	for range 20 {
		if pid, err := readPID(path); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// Holder returns the PID of the process holding dir's lock, or 0 when no
// process does (no lock file, or a file left by a process that has ended).
// It never takes the lock, so it cannot get in the way of a service that is
// starting. It trusts the kernel's list of locks (/proc/locks) where it can
// read it, else whether the PID in the file is alive.
func Holder(dir string) (int, error) {
	return holder(dir, "/proc/locks")
}

func holder(dir, procLocks string) (int, error) {
	path := filepath.Join(dir, LockName)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: lock: %w", err)
	}
	pid, err := readPID(path)
	if err != nil || pid <= 0 {
		return 0, nil // never locked, or being written: no service to tell
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if held, ok := flockHeld(procLocks, pid, ino); ok {
		if held {
			return pid, nil
		}
		return 0, nil
	}
	if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
		return pid, nil
	}
	return 0, nil
}

// flockHeld reports whether /proc/locks lists an flock held by pid on an
// inode numbered ino; ok is false when the list cannot be read. The device
// column is not compared: on overlay file systems it names the layer, not
// what stat(2) reports.
func flockHeld(procLocks string, pid int, ino uint64) (held, ok bool) {
	f, err := os.Open(procLocks)
	if err != nil {
		return false, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->".
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		p, _ := strconv.Atoi(fields[4])
		dev := strings.Split(fields[5], ":")
		if p != pid || len(dev) != 3 {
			continue
		}
		if n, err := strconv.ParseUint(dev[2], 10, 64); err == nil && n == ino {
			return true, true
		}
	}
	return false, sc.Err() == nil
}

// giveToDirOwner chowns f to the owner of dir when running as root and dir
// belongs to someone else: a file root creates in the service's spool must
// stay readable by the service.
func giveToDirOwner(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid == 0 && st.Gid == 0 {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
