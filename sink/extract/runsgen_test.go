package extract

import (
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
)

var generatedMails = flag.Int("runs.mails", 150, "mails TestRunsPathGenerated builds and checks")

// TestRunsPathGenerated checks readRuns against the full parse on random
// mails built of the pieces that matter to it: boundaries of the characters
// enmime's base64 cleaner drops or of a marker's length, base64 bodies of
// any line width and both line breaks, shorter and longer than enmime's
// first read of a part, broken mid-run, followed by lines that nearly are
// boundary lines, in parts of every kind, nested, not closed. Byte-level
// fuzzing (FuzzRunsPath) seldom builds such mails; run with -runs.mails
// 20000 for a longer search.
func TestRunsPathGenerated(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 17)) // the same mails first, whatever the count
	taken := 0
	for n := range *generatedMails {
		raw, fp := generatedMail(rng)
		if runsTaken(raw, fp) {
			taken++
		}
		t.Run("", func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("mail %d (runMin %d, anyPart %v):\n%q", n, fp.runMin, fp.anyPart, raw)
				}
			}()
			checkRunsPath(t, raw, fp)
		})
	}
	t.Logf("%d of %d mails took the runs path", taken, *generatedMails)
	if taken < *generatedMails/10 {
		t.Errorf("only %d of %d mails took the runs path", taken, *generatedMails)
	}
}

func generatedMail(rng *rand.Rand) ([]byte, fastPaths) {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	nl := pick("\r\n", "\n")
	br := func() string {
		if rng.IntN(20) == 0 {
			return pick("\r\n", "\n", "\r")
		}
		return nl
	}
	bound := func() string {
		return pick("b1", "b", "----=_Part_0_1", ".", "=", "==", "!", "b 1", "x\ty", "=_x",
			strings.Repeat("q", 140), strings.Repeat("q", 146), strings.Repeat("q", 150), "b1--", "-")
	}
	var b strings.Builder
	body := func(boundary string) {
		size := []int{10, 300, 2900, 3100, 4000, 6000}[rng.IntN(6)] + rng.IntN(50)
		enc := lines(picture(size, rng.Uint64()), []int{76, 76, 64, 1, 3, 4, 77, 1000}[rng.IntN(8)], nl)
		if w := rng.IntN(4); w == 0 {
			enc = lines(picture(size, rng.Uint64()), 1+rng.IntN(120), nl)
		}
		switch rng.IntN(16) {
		case 0: // a defect mid-run
			i := rng.IntN(len(enc))
			enc = enc[:i] + pick("!", "=", "\r", "\n", "\r\n\r\n", " ", "\xc1", "-", "--"+boundary+nl, "=="+nl) + enc[i:]
		case 1: // trailing padding lines and blank lines
			enc += pick("="+nl, nl, nl+nl, "=="+nl+nl)
		case 2: // no line break at the end
			enc = strings.TrimRight(enc, "\r\n")
		}
		b.WriteString(enc)
		if rng.IntN(6) == 0 { // a line that nearly is a boundary line
			b.WriteString(pick("-!--", "X--", "XY--", "--", "-", " --", "\t--", "=--", "-=--", "---") + boundary +
				pick(" ", "", "--", "x", "\t", "-") + br())
		}
	}
	header := func() {
		if rng.IntN(2) == 0 {
			b.WriteString("Content-Type: image/jpeg" + nl + "Content-Transfer-Encoding: base64" + nl + nl)
			return
		}
		b.WriteString(pick(
			"Content-Type: image/jpeg; name=a.jpg"+nl+"Content-Transfer-Encoding: base64"+nl+"Content-Disposition: attachment; filename=a.jpg"+nl,
			"Content-Type: image/png"+nl+"Content-Transfer-Encoding: base64"+nl,
			"Content-Type: application/octet-stream"+nl+"Content-Transfer-Encoding: Base64"+nl,
			"Content-Transfer-Encoding: base64"+nl,
			"Content-Type: text/plain"+nl+"Content-Transfer-Encoding: base64"+nl,
			"Content-Type: text/html; charset=utf-8"+nl+"Content-Transfer-Encoding: base64"+nl,
			"Content-Type: image/jpeg"+nl+"Content-Disposition: inline"+nl+"Content-Transfer-Encoding: base64"+nl,
			"Content-Type: image/jpeg"+nl+"Content-Transfer-Encoding: quoted-printable"+nl,
			"Content-Type: image/jpeg"+nl,
			"",
		))
		if rng.IntN(10) > 0 {
			b.WriteString(nl)
		}
	}
	var multipart func(boundary string, depth int)
	multipart = func(boundary string, depth int) {
		if rng.IntN(4) == 0 {
			b.WriteString(pick("preamble"+nl, "QUJD"+nl, lines(picture(5000, 1), 76, nl)))
		}
		for range 1 + rng.IntN(4) {
			b.WriteString("--" + boundary + pick(nl, nl, " "+nl, "\t"+nl))
			switch rng.IntN(6) {
			case 0:
				b.WriteString("Content-Type: text/plain" + nl + nl + "Motion detected." + nl)
			case 1:
				if depth < 2 {
					inner := bound()
					b.WriteString("Content-Type: multipart/related; boundary=\"" + inner + "\"" + nl + nl)
					multipart(inner, depth+1)
					break
				}
				fallthrough
			default:
				header()
				body(boundary)
			}
		}
		switch rng.IntN(8) {
		case 0: // not closed
		case 1:
			b.WriteString("--" + boundary + "--")
		default:
			b.WriteString("--" + boundary + "--" + nl)
			if rng.IntN(4) == 0 {
				b.WriteString(pick("epilogue"+nl, lines(picture(300, 2), 76, nl)))
			}
		}
	}
	b.WriteString("From: cam@cams.lan" + nl + "Subject: motion" + nl + "MIME-Version: 1.0" + nl)
	if rng.IntN(8) == 0 {
		header()
		body("")
	} else {
		boundary := bound()
		b.WriteString("Content-Type: multipart/mixed; boundary=\"" + boundary + "\"" + nl + nl)
		multipart(boundary, 0)
	}
	fp := fastPaths{plain: true, runMin: []int{1, 100, 4096}[rng.IntN(3)], anyPart: rng.IntN(2) == 0}
	return []byte(b.String()), fp
}
