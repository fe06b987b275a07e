package procnet

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc writes a /proc tree: a tcp table with a listener on port 1883
// (hex 075B) owned by uid 107, socket inode 4242, and the given processes
// (pid -> fd targets).
func fakeProc(t *testing.T, procs map[int][]string) Proc {
	t.Helper()
	root := t.TempDir()
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n" +
		"   1: 0100007F:075B 0100007F:D431 01 00000000:00000000 00:00000000 00000000   107        0 9999 1 0 100 0 0 10 0\n" +
		"   2: 0200007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0 100 0 0 10 0\n" +
		"   3: 00000000:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4242 1 0 100 0 0 10 0\n"
	write := func(path, data string) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "net/tcp"), tcp)
	write(filepath.Join(root, "net/tcp6"), "  sl  local_address ...\n")
	for pid, fds := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		write(filepath.Join(dir, "comm"), "mosquitto\n")
		write(filepath.Join(dir, "cmdline"), "/usr/sbin/mosquitto\x00-c\x00/etc/mosquitto/mosquitto.conf\x00")
		os.MkdirAll(filepath.Join(dir, "fd"), 0o755)
		for i, target := range fds {
			if err := os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return Proc{Root: root}
}

func TestListener(t *testing.T) {
	tests := []struct {
		name    string
		procs   map[int][]string
		ip      net.IP
		port    int
		pid     int
		uid     int
		inMsg   []string
		notFind bool
	}{
		{"visible holder", map[int][]string{1: {"/dev/null"}, 812: {"/dev/null", "socket:[9999]", "socket:[4242]"}}, net.ParseIP("127.0.0.1"), 1883, 812, 107,
			[]string{"pid 812 (mosquitto: /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf)"}, false},
		{"another user's process", map[int][]string{1: {"socket:[1111]"}}, net.ParseIP("127.0.0.1"), 1883, 0, 107,
			[]string{"cannot see", "sudo ss -ltnp 'sport = :1883'"}, false},
		{"the listener on the address asked for", map[int][]string{7: {"socket:[5555]"}, 812: {"socket:[4242]"}}, net.ParseIP("127.0.0.2"), 1883, 7, 0,
			[]string{"pid 7 (mosquitto"}, false},
		{"nothing listens", nil, nil, 2525, 0, -1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := fakeProc(t, tt.procs).Listener(tt.ip, tt.port)
			if tt.notFind {
				if err != ErrNotFound {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.PID != tt.pid || h.UID != tt.uid {
				t.Errorf("pid %d uid %d, want %d %d", h.PID, h.UID, tt.pid, tt.uid)
			}
			for _, want := range tt.inMsg {
				if !strings.Contains(h.String(), want) {
					t.Errorf("%q lacks %q", h.String(), want)
				}
			}
		})
	}
}

// TestListenerLive: on this host, a listener this process holds is found
// with this process's PID and command.
func TestListenerLive(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		l, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			t.Logf("%s: %v (no such stack here)", network, err)
			continue
		}
		defer l.Close()
		a := l.Addr().(*net.TCPAddr)
		h, err := Listener(a.IP, a.Port)
		comm, _ := os.ReadFile("/proc/self/comm")
		if err != nil || h.PID != os.Getpid() || h.Comm != strings.TrimSpace(string(comm)) || h.UID != os.Getuid() {
			t.Errorf("%s: Listener = %+v, %v; want pid %d, comm %q", network, h, err, os.Getpid(), comm)
		}
	}
}
