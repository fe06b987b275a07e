package hass

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgesink/edgesink/sink"
)

func image(n byte, size int) sink.Attachment {
	data := append([]byte{0xff, 0xd8, 0xff}, bytes.Repeat([]byte{n}, size)...)
	sum := sha256.Sum256(data)
	return sink.Attachment{Filename: "x.jpg", ContentType: "application/octet-stream", Size: len(data),
		SHA256: hex.EncodeToString(sum[:]), Data: data}
}

func openSnaps(t *testing.T, store string, maxSize, maxRetained int64) *Snapshots {
	t.Helper()
	s, err := OpenSnapshots(SnapshotConfig{Store: store, MaxSize: maxSize, MaxRetained: maxRetained, Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStageKeepsTheLastImageWithinTheCap: the last image not over
// max_size is the one published; no attachment keeps its bytes past the
// stage, whatever the store.
func TestStageKeepsTheLastImageWithinTheCap(t *testing.T) {
	for _, store := range []string{StoreLatest, StoreDisk, StoreOff} {
		t.Run(store, func(t *testing.T) {
			s := openSnaps(t, store, 1000, 4000)
			small, big := image(1, 100), image(2, 5000)
			text := sink.Attachment{Filename: "a.txt", SHA256: "00"}
			a := &sink.Alert{Device: "cam", Attachments: []sink.Attachment{small, big, text}}
			err := s.Stage(sink.HandlerFunc(func(_ context.Context, a *sink.Alert) error {
				for _, at := range a.Attachments {
					if at.Data != nil {
						t.Errorf("%s still carries its bytes into the queue", at.Filename)
					}
				}
				return nil
			})).Handle(context.Background(), a)
			if err != nil {
				t.Fatal(err)
			}
			sh := s.forAlert(a)
			if store == StoreOff {
				if sh != nil {
					t.Error("store off kept an image")
				}
				return
			}
			if sh == nil || !bytes.Equal(sh.data, small.Data) {
				t.Fatalf("kept %v, want the image within max_size", sh)
			}
		})
	}
	var none *Snapshots
	a := &sink.Alert{Attachments: []sink.Attachment{image(1, 10)}}
	_ = none.Stage(sink.HandlerFunc(func(context.Context, *sink.Alert) error { return nil })).Handle(context.Background(), a)
	if a.Attachments[0].Data != nil {
		t.Error("without Home Assistant the bytes were not dropped")
	}
}

// TestDiskStoreIsDurableBeforeTheQueue: in store disk the image is on
// disk when the queue takes the alert; identical frames share one file,
// removed once the last of their alerts is published.
func TestDiskStoreIsDurableBeforeTheQueue(t *testing.T) {
	s := openSnaps(t, StoreDisk, 1000, 4000)
	img := image(7, 200)
	path := s.contentPath(img.SHA256)
	var alerts []*sink.Alert
	for range 2 {
		a := &sink.Alert{Device: "cam", Attachments: []sink.Attachment{img}}
		a.Attachments[0].Data = bytes.Clone(img.Data)
		err := s.Stage(sink.HandlerFunc(func(context.Context, *sink.Alert) error {
			if _, err := os.Stat(path); err != nil {
				t.Errorf("image not on disk when the queue takes the alert: %v", err)
			}
			return nil
		})).Handle(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		alerts = append(alerts, a)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("%d files for two identical frames", len(entries))
	}
	for i, a := range alerts {
		sh := s.forAlert(a)
		if sh == nil || !bytes.Equal(sh.data, img.Data) {
			t.Fatalf("alert %d: image not found", i)
		}
		s.release(sh.sha, true)
		_, err := os.Stat(path)
		if gone := os.IsNotExist(err); gone != (i == 1) {
			t.Errorf("after publishing alert %d the file is gone: %v", i, gone)
		}
	}
}

// TestRetainedSnapshotsAreCapped: beyond max_retained the least recently
// published snapshot topic is cleared and its latest file removed; what
// is left is found again at the next start.
func TestRetainedSnapshotsAreCapped(t *testing.T) {
	s := openSnaps(t, StoreLatest, 1000, 2500)
	data := bytes.Repeat([]byte{0xff}, 1000)
	var files []string
	for _, dev := range []string{"a", "b", "c"} {
		f := s.latestFile(dev, "")
		files = append(files, f)
		clear := s.published(&shot{data: data}, dev, []string{"edgesink/" + dev + "/snapshot"}, []string{f})
		want := 0
		if dev == "c" {
			want = 1
		}
		if len(clear) != want || (want == 1 && clear[0] != "edgesink/a/snapshot") {
			t.Errorf("after %s: clear %v", dev, clear)
		}
	}
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Error("the evicted snapshot's file is still kept")
	}
	again, _ := OpenSnapshots(s.cfg, nil)
	kept := again.latest(func(d string) bool { return d != "c" })
	if len(kept) != 1 || kept[0].device != "b" || !bytes.Equal(kept[0].data, data) {
		var names []string
		for _, k := range kept {
			names = append(names, k.device)
		}
		t.Errorf("found at the next start: %v, want [b]", names)
	}
	if _, err := os.Stat(files[2]); !os.IsNotExist(err) {
		t.Error("an unregistered device's snapshot was kept")
	}
}
