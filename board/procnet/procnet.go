// Package procnet names the process that holds a listening TCP port, from
// /proc as Linux shows it, so "address already in use" can say who is in
// the way instead of guessing. Standard library only.
//
// It finds the listening socket's inode in /proc/net/tcp and tcp6, then the
// process with a file descriptor on that socket in /proc/*/fd. Another
// user's process is visible only to root: then the socket's owner uid is
// still known, and the caller says which command to run.
package procnet

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Holder is what holds a listening TCP port.
type Holder struct {
	Port    int
	PID     int    // 0: not visible to this process
	Comm    string // /proc/PID/comm
	Cmdline string // /proc/PID/cmdline, arguments joined by spaces
	UID     int    // owner of the socket
	User    string // UID's name, "" if unknown
}

// ErrNotFound means no listening socket on the port is in /proc/net (for
// example it is in another network namespace).
var ErrNotFound = errors.New("procnet: no listening socket on that port")

// Proc reads a /proc tree; Root is "/proc" on a running system.
type Proc struct{ Root string }

// Listener finds what holds a TCP port in the LISTEN state on this host,
// where a bind to ip (nil: any) would clash: ip itself or a wildcard.
func Listener(ip net.IP, port int) (Holder, error) { return Proc{Root: "/proc"}.Listener(ip, port) }

// Listener finds what holds a TCP port in the LISTEN state, IPv4 or IPv6,
// where a bind to ip (nil or unspecified: any address) would clash.
func (p Proc) Listener(ip net.IP, port int) (Holder, error) {
	h := Holder{Port: port, UID: -1}
	inode := ""
	for _, table := range []string{"net/tcp", "net/tcp6"} {
		ino, uid, err := p.listening(table, ip, port)
		if err != nil {
			continue
		}
		if ino != "" {
			inode, h.UID = ino, uid
			break
		}
	}
	if inode == "" {
		return h, ErrNotFound
	}
	if u, err := user.LookupId(strconv.Itoa(h.UID)); err == nil {
		h.User = u.Username
	}
	h.PID = p.socketOwner(inode)
	if h.PID > 0 {
		comm, _ := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(h.PID), "comm"))
		h.Comm = strings.TrimSpace(string(comm))
		cmdline, _ := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(h.PID), "cmdline"))
		h.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return h, nil
}

// tcpListen is the state column's value for LISTEN.
const tcpListen = "0A"

// listening returns the inode and owner of a listening socket on port in
// one /proc/net table that clashes with ip, "" if there is none. The
// table's lines are "sl local_address rem_address st ... uid timeout inode
// ...", addresses in hex as ADDR:PORT, ADDR in the kernel's byte order.
func (p Proc) listening(table string, ip net.IP, port int) (inode string, uid int, err error) {
	f, err := os.Open(filepath.Join(p.Root, table))
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(n) != port {
			continue
		}
		if !clashes(ip, parseHexIP(hexAddr)) {
			continue
		}
		uid, _ := strconv.Atoi(fields[7])
		return fields[9], uid, nil
	}
	return "", 0, sc.Err()
}

// clashes tells whether a bind to want collides with a listener on have:
// either is a wildcard, or they are the same address.
func clashes(want, have net.IP) bool {
	return want == nil || have == nil || want.IsUnspecified() || have.IsUnspecified() || want.Equal(have)
}

// parseHexIP decodes an address from /proc/net/tcp{,6}: 32-bit words, each
// in host (here little-endian) byte order. nil if it does not parse.
func parseHexIP(s string) net.IP {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// socketOwner returns a process with a descriptor on socket inode, 0 if
// none is visible.
func (p Proc) socketOwner(inode string) int {
	want := "socket:[" + inode + "]"
	pids, _ := os.ReadDir(p.Root)
	for _, de := range pids {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(p.Root, de.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or another user's
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && link == want {
				return pid
			}
		}
	}
	return 0
}

// String describes the holder for an error message.
func (h Holder) String() string {
	if h.PID > 0 {
		s := fmt.Sprintf("pid %d (%s)", h.PID, h.Comm)
		if h.Cmdline != "" {
			s = fmt.Sprintf("pid %d (%s: %s)", h.PID, h.Comm, h.Cmdline)
		}
		return s
	}
	who := "another user's process"
	if h.User != "" {
		who = fmt.Sprintf("a process of user %s", h.User)
	} else if h.UID >= 0 {
		who = fmt.Sprintf("a process of uid %d", h.UID)
	}
	return who + ", which this user cannot see; see it with: " + SSCommand(h.Port)
}

// SSCommand is the command that shows what listens on port.
func SSCommand(port int) string {
	return fmt.Sprintf("sudo ss -ltnp 'sport = :%d'", port)
}
