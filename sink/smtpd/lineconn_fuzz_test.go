package smtpd

import (
	"bytes"
	"io"
	"testing"
)

// FuzzLineConn feeds the line shim arbitrary client bytes in arbitrary
// pieces: it must not panic or hang, must not grow the stream beyond the
// CR it adds per LF and the address literal of an empty HELO, and, when
// no BDAT chunk is involved, must leave no bare LF for go-smtp.
func FuzzLineConn(f *testing.F) {
	for _, seed := range []string{
		"EHLO cam\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nSubject: x\n\nmotion\n.\nQUIT\n",
		"HELO\r\nHELP\r\nNOOP\nhelp me\n", "BDAT 5 LAST\na\nb\nc\nNOOP\n", "STARTTLS\nEHLO x\n",
		"\n\n\r\r\n.\n", "DATA\nline one\r\nline two\nbare\rcr\r\n..dot\n.\nNOOP\n", "EHLO " + string(bytes.Repeat([]byte("x"), 2000)) + "\n",
	} {
		f.Add([]byte(seed), uint8(1))
		f.Add([]byte(seed), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		sc := &scriptConn{r: bytes.NewReader(in), chunk: int(chunk%64) + 1}
		lc := newLineConn(sc, shimConfig{translateLF: true, maxErrors: 3})
		// Every reply go-smtp would write after DATA: 354 turns data mode on.
		if bytes.Contains(bytes.ToUpper(in), []byte("DATA")) {
			_, _ = lc.Write([]byte("354 go ahead\r\n"))
		}
		out, err := io.ReadAll(lc)
		if err != nil {
			t.Fatal(err)
		}
		// The same bytes a byte at a time, through the reference path
		// (no whole runs): the output must not differ.
		ref := newLineConn(&scriptConn{r: bytes.NewReader(in), chunk: 1}, shimConfig{translateLF: true, maxErrors: 3})
		ref.byteAtATime = true
		if bytes.Contains(bytes.ToUpper(in), []byte("DATA")) {
			_, _ = ref.Write([]byte("354 go ahead\r\n"))
		}
		if want, _ := io.ReadAll(ref); !bytes.Equal(out, want) {
			t.Fatalf("pieces of %d give\n%q\nbyte by byte\n%q", sc.chunk, out, want)
		}
		helos := bytes.Count(bytes.ToUpper(in), []byte("HELO")) + bytes.Count(bytes.ToUpper(in), []byte("EHLO"))
		if max := 2*len(in) + helos*len(" [192.0.2.7]\r\n"); len(out) > max {
			t.Fatalf("%d bytes out of %d in", len(out), len(in))
		}
		if bytes.Contains(bytes.ToUpper(in), []byte("BDAT")) {
			return
		}
		for i, ch := range out {
			if ch == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, out)
			}
		}
	})
}
