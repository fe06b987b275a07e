package mqtt

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"os"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// paho reads each packet from the connection as it comes: the first byte,
// then the length a byte at a time, then the rest, each a read(2) of its
// own. A PUBACK, four bytes, costs three system calls, and every alert
// waits for one or more. bufferedConn reads the socket in blocks instead,
// so the acknowledgements that arrive together are one read.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// readBufferSize holds many acknowledgements; a larger message (Home
// Assistant's birth, say) is read straight through it.
const readBufferSize = 2048

// bufferedDial returns the dial for paho's SetCustomOpenConnectionFn when
// the broker's scheme is one it opens as paho would (TCP or TLS, no proxy
// from the environment), else nil: paho opens the rest (websockets,
// proxies) itself, unbuffered.
func bufferedDial(broker string) paho.OpenConnectionFunc {
	u, err := url.Parse(broker)
	if err != nil || os.Getenv("all_proxy") != "" || os.Getenv("ALL_PROXY") != "" {
		return nil
	}
	var tlsOn bool
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		tlsOn = true
	default:
		return nil
	}
	return func(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
		d := o.Dialer
		if d == nil {
			d = &net.Dialer{Timeout: o.ConnectTimeout}
		}
		var c net.Conn
		var err error
		if tlsOn {
			c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
		} else {
			c, err = d.Dial("tcp", uri.Host)
		}
		if err != nil {
			return nil, err
		}
		return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}, nil
	}
}
