package extract_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgesink/edgesink/sink/extract"
	"github.com/edgesink/edgesink/sink/extract/extracttest"
)

// TestExtractCorpus checks the device samples against the expectations that
// came with them, independently of the golden files.
func TestExtractCorpus(t *testing.T) {
	for file, want := range extracttest.LoadCorpus(t, "../../testdata/corpus") {
		t.Run(file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("../../testdata/corpus", file))
			if err != nil {
				t.Fatal(err)
			}
			a, err := extract.Extract(raw, extract.Envelope{ReceivedAt: time.Now(), MailFrom: want.From})
			if err != nil {
				t.Fatal(err)
			}
			extracttest.CheckCorpusAlert(t, a, want)
		})
	}
}
