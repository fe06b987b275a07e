package extract_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink/extract"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestAlertOwnsItsBytes: an alert keeps nothing of the buffer it was read
// from, which the SMTP server recycles for the next mail: scribbling over
// the buffer afterwards changes nothing in the alert, pictures included.
func TestAlertOwnsItsBytes(t *testing.T) {
	env := extract.Envelope{ReceivedAt: time.Date(2026, 11, 21, 3, 14, 7, 0, time.UTC), RemoteAddr: "192.0.2.10:40000",
		MailFrom: "device@devices.lan", RcptTo: []string{"alerts@edgesink.lan"}}
	files, _ := filepath.Glob("../../testdata/*/*.eml")
	if len(files) < 10 {
		t.Fatalf("sample mails missing under ../../testdata (%d found)", len(files))
	}
	mails := map[string][]byte{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		mails[filepath.Base(file)] = raw
	}
	_, mails["camera"] = smtptest.CameraMail(0)
	_, mails["text"] = smtptest.AlertMail(0, 4096)
	for name, raw := range mails {
		t.Run(name, func(t *testing.T) {
			want, werr := extract.Extract(raw, env)
			buf := append([]byte(nil), raw...)
			got, gerr := extract.Extract(buf, env)
			for i := range buf {
				buf[i] = 'X'
			}
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("errors differ: %v, %v", werr, gerr)
			}
			got.ID, want.ID = "", ""
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if !bytes.Equal(g, w) {
				t.Fatalf("the alert changed with its buffer:\n got %s\nwant %s", g, w)
			}
			for i := range want.Attachments {
				if !bytes.Equal(got.Attachments[i].Data, want.Attachments[i].Data) {
					t.Fatalf("attachment %d's bytes changed with the buffer", i)
				}
			}
		})
	}
}

// TestCameraMailRunsPath: the camera mail of make bench takes the runs
// path (readRuns), with the full parse's alert.
func TestCameraMailRunsPath(t *testing.T) {
	_, camera := smtptest.CameraMail(0)
	if !extract.RunsTaken(camera) {
		t.Fatal("the camera mail does not take the runs path")
	}
	extract.CheckRunsPath(t, camera)
}
