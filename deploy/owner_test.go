package deploy

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

func assertOwner(t *testing.T, path, uid, gid string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if strconv.Itoa(int(st.Uid)) != uid || strconv.Itoa(int(st.Gid)) != gid || fi.Mode().Perm() != mode {
		t.Errorf("%s: %d:%d %v, want %s:%s %v", path, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid, mode)
	}
}
