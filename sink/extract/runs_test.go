package extract

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// For the external test of smtptest's camera mail (smtptest imports this
// package).
var (
	RunsTaken     = func(raw []byte) bool { return runsTaken(raw, fast) }
	CheckRunsPath = func(t *testing.T, raw []byte) { t.Helper(); checkRunsPath(t, raw, fast) }
)

// picture is n bytes that start and end like a JPEG.
func picture(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0})
	b[n-2], b[n-1] = 0xFF, 0xD9
	return b
}

// lines is b in base64, width characters a line, each ending with nl.
func lines(b []byte, width int, nl string) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var s strings.Builder
	for len(enc) > width {
		s.WriteString(enc[:width] + nl)
		enc = enc[width:]
	}
	s.WriteString(enc + nl)
	return s.String()
}

// cameraMail is a camera alert with len(pics) base64 pictures, built like
// smtptest.CameraMail; bodies[i], when set, replaces picture i's base64.
func cameraMail(nl string, boundary string, pics [][]byte, bodies map[int]string, tail string) string {
	var b strings.Builder
	w := func(s string) { b.WriteString(strings.ReplaceAll(s, "\n", nl)) }
	w("From: cam@cams.lan\nTo: alerts@edgesink.lan\nSubject: motion\nMIME-Version: 1.0\n")
	w("Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\n\n")
	w("--" + boundary + "\nContent-Type: text/plain; charset=us-ascii\n\nMotion on channel 1.\n\n")
	for i, p := range pics {
		w("--" + boundary + "\nContent-Type: image/jpeg; name=\"snap.jpg\"\nContent-Transfer-Encoding: base64\n")
		w("Content-Disposition: attachment; filename=\"snap.jpg\"\n\n")
		if body, ok := bodies[i]; ok {
			b.WriteString(body)
		} else {
			b.WriteString(lines(p, 76, nl))
		}
	}
	b.WriteString(tail)
	return b.String()
}

// runSeeds are mails the runs path is for, or nearly.
func runSeeds() []string {
	p1, p2, p3 := picture(3200, 1), picture(3100, 2), picture(5000, 3)
	three := [][]byte{p1, p2, p3}
	end := "--b1--\r\n"
	enc := base64.StdEncoding.EncodeToString(p1)
	mid := len(enc) / 2
	return []string{
		cameraMail("\r\n", "b1", three, nil, end),
		cameraMail("\n", "b1", three, nil, "--b1--\n"),
		cameraMail("\r\n", "----=_camera_snapshot_boundary", three, nil, "--"+"----=_camera_snapshot_boundary"+"--\r\n"),
		// Odd line lengths, one character a line, one long line.
		cameraMail("\r\n", "b1", three, map[int]string{0: lines(p1, 61, "\r\n"), 1: lines(p2, 1, "\r\n"), 2: lines(p3, 1000, "\n")}, end),
		// A bad character mid-run, '-' mid-run, 8-bit, a space, padding mid-run.
		cameraMail("\r\n", "b1", three, map[int]string{0: enc[:mid] + "!" + enc[mid:] + "\r\n", 1: enc[:mid] + "\r\n--b1\r\n" + enc[mid:] + "\r\n",
			2: enc[:mid] + "\xc1\r\n" + enc[mid:] + "\r\n"}, end),
		cameraMail("\r\n", "b1", three, map[int]string{0: lines(p1[:100], 76, "\r\n") + lines(p2, 76, "\r\n"), 1: enc[:mid] + " \r\n" + enc[mid:] + "\r\n"}, end),
		// A lone CR, a blank line mid-run, blank lines and '=' lines after.
		cameraMail("\r\n", "b1", three, map[int]string{0: enc[:mid] + "\r" + enc[mid:] + "\r\n", 1: enc[:mid] + "\r\n\r\n" + enc[mid:] + "\r\n",
			2: lines(p3, 76, "\r\n") + "=\r\n\r\n\r\n"}, end),
		// The run at the very end: without a closing boundary, without a
		// last line break.
		cameraMail("\r\n", "b1", three, nil, ""),
		cameraMail("\r\n", "b1", three, map[int]string{2: strings.TrimSuffix(lines(p3, 76, "\r\n"), "\r\n")}, ""),
		// Nested multiparts; inline, octet-stream, untyped, text, html parts
		// in base64; a top-level picture.
		"From: a@b\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/related; boundary=in\r\n\r\n" +
			"--in\r\nContent-Type: text/html\r\n\r\n<img src=cid:x>\r\n--in\r\nContent-Type: image/png\r\nContent-ID: <x>\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			lines(p1, 76, "\r\n") + "--in--\r\n--out\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			lines(p2, 76, "\r\n") + "\r\n--out\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(p3, 76, "\r\n") + "--out--\r\n",
		"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			lines([]byte(strings.Repeat("text in base64, caf\xe9. ", 200)), 76, "\r\n") +
			"--x\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(p1, 76, "\r\n") +
			"--x\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(p3, 76, "\r\n") + "--x--\r\n",
		"From: a@b\r\nSubject: top\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(p3, 76, "\r\n"),
		"From: a@b\r\nSubject: top\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline; filename=a.jpg\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(p3, 76, "\n"),
		// What a marker looks like, in a text part and as a picture.
		cameraMail("\r\n", "b1", three, map[int]string{0: strings.Repeat("A", 152) + "\r\n"}, end) + strings.Repeat("A", 152) + "\r\n",
		// A boundary of characters the base64 cleaner drops: "--." mid-line
		// is no boundary after the first 4 KB of a part, but is one in it.
		cameraMail("\r\n", ".", three, map[int]string{2: lines(p3, 76, "\r\n") + "-!--. \r\n"}, "--.--\r\n"),
		cameraMail("\r\n", "=", three, map[int]string{2: lines(p3, 76, "\r\n") + "-=--= \r\n"}, "--=--\r\n"),
		// Boundaries near and past the marker's length, a boundary line
		// just after a run's first line.
		cameraMail("\r\n", strings.Repeat("b", 145), three, nil, "--"+strings.Repeat("b", 145)+"--\r\n"),
		cameraMail("\r\n", strings.Repeat("b", 200), three, nil, "--"+strings.Repeat("b", 200)+"--\r\n"),
		cameraMail("\r\n", "b1", three, map[int]string{0: enc[:76] + "\r\nX--b1 \r\n" + enc[76:] + "\r\n"}, end),
		// A part without headers; line breaks mixed; lines that nearly are
		// boundaries; a boundary that starts another.
		"From: a@b\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\r\n" + lines(p1, 76, "\r\n") + end,
		cameraMail("\r\n", "b1", three, map[int]string{0: lines(p1, 76, "\n") + "\r\n", 1: lines(p2, 64, "\r\n") + lines(p3, 64, "\n")}, end),
		cameraMail("\r\n", "b1", three, map[int]string{0: lines(p1, 76, "\r\n") + "--b1x\r\n-b1\r\n--b1-\r\n"}, end),
		"From: a@b\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: multipart/related; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: BASE64\r\n\r\n" + lines(p1, 76, "\r\n") +
			"--b--\r\n--b1\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(p3, 76, "\r\n") + end,
		// A multipart not closed, whose last part is a run of short lines:
		// the boundary reader's last peek is from the start of the last.
		"From: a@b\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: multipart/related; boundary=.\n\n" +
			"--.\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\n" + lines(p3, 1, "\n") + "--b1--\n",
		"From: a@b\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: multipart/related; boundary=.\r\n\r\n" +
			"--.\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(picture(4998, 4), 76, "\r\n") + "QQ\r\n--b1--\r\n",
	}
}

// FuzzRunsPath: for any input, the alert readRuns's path gives is the one
// enmime's full parse gives, byte for byte in JSON (id aside), with the
// same error and the same snapshot bytes. minRun and anyPart let short runs
// and any part take the path.
func FuzzRunsPath(f *testing.F) {
	for _, s := range append(runSeeds(), plainSeeds...) {
		f.Add([]byte(s), uint16(1), false)
		f.Add([]byte(s), uint16(100), true)
	}
	for _, file := range sampleFiles(f) {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, uint16(1), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, minRun uint16, anyPart bool) {
		fp := fastPaths{plain: true, runMin: int(minRun%8192) + 1, anyPart: anyPart}
		checkRunsPath(t, raw, fp)
	})
}

func checkRunsPath(t *testing.T, raw []byte, fp fastPaths) {
	t.Helper()
	if !runsTaken(raw, fp) && !plainTaken(raw) {
		// Both go through the full parse: the same code twice, and not
		// deterministic (see fullParseCanGive): nothing to compare.
		return
	}
	fast, errFast := extract(raw, testEnvelope, fp)
	full, errFull := extract(raw, testEnvelope, fastPaths{})
	if !errors.Is(errFast, errFull) && (errFast == nil || errFull == nil || errFast.Error() != errFull.Error()) {
		t.Fatalf("error %v, full parse %v", errFast, errFull)
	}
	// enmime gives parse errors in random order when Content-Type has
	// several malformed parameters (its mediatype ranges over a map).
	slices.Sort(fast.ParseErrors)
	slices.Sort(full.ParseErrors)
	for i := range min(len(fast.Attachments), len(full.Attachments)) {
		if !bytes.Equal(fast.Attachments[i].Data, full.Attachments[i].Data) {
			t.Fatalf("attachment %d: %d bytes, full parse %d", i, len(fast.Attachments[i].Data), len(full.Attachments[i].Data))
		}
	}
	if g, w := alertJSON(t, fast), alertJSON(t, full); g != w && !fullParseCanGive(t, raw, fast) {
		g, _, _ = strings.Cut(g, "\ndata: ")
		w, _, _ = strings.Cut(w, "\ndata: ")
		t.Fatalf("alert differs from the full parse's\n--- runs path\n%s\n--- full parse\n%s", g, w)
	}
}

// TestRunsPath: a camera mail takes the runs path, with the full parse's
// alert; of the seeds, those that must not take it do not.
// TestCameraMailRunsPath checks the camera mail of make bench.
func TestRunsPath(t *testing.T) {
	big := []byte(cameraMail("\r\n", "b1", [][]byte{picture(150<<10, 1), picture(150<<10, 2)}, nil, "--b1--\r\n"))
	if !runsTaken(big, fast) {
		t.Fatal("a camera mail does not take the runs path")
	}
	checkRunsPath(t, big, fast)
	seeds := runSeeds()
	short := fastPaths{plain: true, runMin: 1}
	for i, want := range map[int]bool{
		0: true, 1: true, 2: true, 3: true, 11: true, 12: true, 16: true, 20: true, 22: true, 23: true, 24: true,
		19: false,         // the part without headers has no type
		21: false,         // the near-boundaries are in the part, base64 letters and all
		5:  true, 6: true, // the runs that fail stay for enmime; the others go
		4:  false, // a boundary mid-run: a part without a header, enmime gives up
		7:  true,  // the last part not closed
		10: true,  // the text and html parts stay for enmime
		13: true,  // a marker's look-alike is not the marker
		8:  false, // the last part ends without a line break
		9:  false, // an untyped part is text for enmime
		14: false, // "--." mid-line in a part's first 4 KB
		15: false, // "--=" mid-line
		17: false, // a boundary too long for the marker
		18: false, // "X--b1 " is a boundary line for enmime
	} {
		if got := runsTaken([]byte(seeds[i]), short); got != want {
			t.Errorf("seed %d: runs path %v, want %v", i, got, want)
		}
		checkRunsPath(t, []byte(seeds[i]), short)
	}
	// Text in base64, taken for a run: enmime decodes its charset.
	if any := (fastPaths{runMin: 1, anyPart: true}); runsTaken([]byte(seeds[10]), any) {
		t.Error("a text part's run took the runs path")
	}
}

// TestRunsPathEnmimeVersion: runs.go's reasoning was read against enmime
// v2.3.0's boundary reader and base64 cleaner. When enmime changes, read
// them again (boundary.go, part.go, internal/coding/base64.go), fuzz
// FuzzRunsPath for long, then move this version on.
func TestRunsPathEnmimeVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "github.com/jhillyerd/enmime/v2 v2.3.0\n") {
		t.Fatal("enmime is no longer v2.3.0: check readRuns (runs.go) against it")
	}
}

// runsTaken reports whether extract reads raw by readRuns.
func runsTaken(raw []byte, fp fastPaths) bool {
	if fp.plain && plainTaken(raw) {
		return false
	}
	br := readers.Get().(*bufio.Reader)
	defer readers.Put(br)
	_, ok := readRuns(raw, br, fp)
	return ok
}
