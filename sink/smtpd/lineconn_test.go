package smtpd

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// scriptConn is a net.Conn whose reader delivers a script in small pieces.
type scriptConn struct {
	r     io.Reader
	chunk int
	wrote bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *scriptConn) Write(p []byte) (int, error) { return c.wrote.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// TestLineConnCommandMode checks the client-side rewriting, delivered in
// 1-, 3- and 4096-byte pieces so state across reads is exercised.
func TestLineConnCommandMode(t *testing.T) {
	tests := []struct {
		name, in, want string
		strict         bool
		emptyHelo      bool
	}{
		{name: "crlf untouched", in: "EHLO cam\r\nNOOP\r\n", want: "EHLO cam\r\nNOOP\r\n"},
		{name: "bare lf", in: "EHLO cam\nNOOP\n", want: "EHLO cam\r\nNOOP\r\n"},
		{name: "mixed", in: "EHLO cam\r\nNOOP\nQUIT\r\n", want: "EHLO cam\r\nNOOP\r\nQUIT\r\n"},
		{name: "empty helo", in: "HELO\r\n", want: "HELO [192.0.2.7]\r\n", emptyHelo: true},
		{name: "blank ehlo bare lf", in: "ehlo   \n", want: "ehlo [192.0.2.7]\r\n", emptyHelo: true},
		{name: "odd helo kept", in: "HELO my camera!\r\n", want: "HELO my camera!\r\n"},
		{name: "helo then named ehlo", in: "HELO\r\nEHLO cam\r\n", want: "HELO [192.0.2.7]\r\nEHLO cam\r\n"},
		{name: "strict keeps bare lf", in: "NOOP\n", want: "NOOP\n", strict: true},
		{name: "strict still fixes helo", in: "HELO\n", want: "HELO [192.0.2.7]\r\n", strict: true, emptyHelo: true},
		{name: "bdat chunk untouched", in: "BDAT 5 LAST\r\na\nb\nc\nNOOP\n", want: "BDAT 5 LAST\r\na\nb\nc\r\nNOOP\r\n"},
		{name: "bad bdat is a command", in: "BDAT x\nNOOP\n", want: "BDAT x\r\nNOOP\r\n"},
		{name: "bdat with bad keyword passes no chunk", in: "BDAT 3 MORE\nab\n", want: "BDAT 3 MORE\r\nab\r\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 3, 4096} {
			sc := &scriptConn{r: bytes.NewReader([]byte(tt.in)), chunk: chunk}
			lc := newLineConn(sc, shimConfig{translateLF: !tt.strict})
			got, err := io.ReadAll(lc)
			if err != nil {
				t.Fatalf("%s/%d: %v", tt.name, chunk, err)
			}
			if string(got) != tt.want {
				t.Errorf("%s/%d: got %q, want %q", tt.name, chunk, got, tt.want)
			}
			if lc.heloWasEmpty() != tt.emptyHelo {
				t.Errorf("%s/%d: heloWasEmpty = %v", tt.name, chunk, lc.heloWasEmpty())
			}
		}
	}
}

// TestLineConnDataMode checks that DATA content is translated but never
// rewritten as commands, and that command mode resumes after CRLF.CRLF.
func TestLineConnDataMode(t *testing.T) {
	sc := &scriptConn{r: bytes.NewReader([]byte("HELO\nBDAT 2\nSTARTTLS\n.\nHELO\n")), chunk: 1}
	lc := newLineConn(sc, shimConfig{translateLF: true})
	// The server has just answered DATA with 354.
	if _, err := lc.Write([]byte("354 go ahead\r\n")); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(lc)
	want := "HELO\r\nBDAT 2\r\nSTARTTLS\r\n.\r\nHELO [192.0.2.7]\r\n"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLineConnHelp checks that HELP is answered by the shim, in order: only
// once go-smtp has read (and so answered) everything before it, and that
// what follows it is passed on afterwards.
func TestLineConnHelp(t *testing.T) {
	for _, chunk := range []int{1, 4096} {
		sc := &scriptConn{r: bytes.NewReader([]byte("NOOP\nHELP\nNOOP\n")), chunk: chunk}
		lc := newLineConn(sc, shimConfig{translateLF: true})
		var got bytes.Buffer
		buf := make([]byte, 64)
		for {
			n, err := lc.Read(buf)
			got.Write(buf[:n])
			if got.String() == "NOOP\r\n" && sc.wrote.Len() != 0 {
				t.Fatalf("%d: HELP answered before go-smtp read the NOOP before it: %q", chunk, sc.wrote.String())
			}
			if err != nil {
				break
			}
		}
		if got.String() != "NOOP\r\nNOOP\r\n" {
			t.Errorf("%d: go-smtp got %q", chunk, got.String())
		}
		if want := "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT\r\n"; sc.wrote.String() != want {
			t.Errorf("%d: replied %q, want %q", chunk, sc.wrote.String(), want)
		}
	}
}
