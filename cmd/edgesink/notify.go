package main

import (
	"net"
	"os"
)

// sdNotify sends a state ("READY=1", "STOPPING=1", "STATUS=...") to the
// service manager, as sd_notify(3) does: one datagram to $NOTIFY_SOCKET.
// Without that variable (not started by systemd with Type=notify) it does
// nothing. A leading '@' names a Linux abstract socket.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
