// Package extracttest holds what tests of several packages share about
// extraction: the device corpus under testdata/corpus and its expectations.
package extracttest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink"
)

// CorpusCase is one entry of testdata/corpus/expected.json.
type CorpusCase struct {
	From         string   `json:"from"`
	Subject      string   `json:"subject"`
	TextContains []string `json:"text_contains"`
	HTMLContains []string `json:"html_contains"`
	Attachments  []struct {
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Size        int    `json:"size"`
		SHA256      string `json:"sha256"` // of the decoded bytes, when given
	} `json:"attachments"`
}

// LoadCorpus reads dir/expected.json: file name to expectations.
func LoadCorpus(t testing.TB, dir string) map[string]CorpusCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]CorpusCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 4 {
		t.Fatalf("expected.json has %d cases, want at least 4", len(cases))
	}
	return cases
}

// CheckCorpusAlert asserts what expected.json says of one alert.
func CheckCorpusAlert(t testing.TB, a *sink.Alert, want CorpusCase) {
	t.Helper()
	if len(a.From) != 1 || a.From[0] != want.From {
		t.Errorf("from = %q, want [%q]", a.From, want.From)
	}
	if a.Subject != want.Subject {
		t.Errorf("subject = %q, want %q", a.Subject, want.Subject)
	}
	for _, s := range want.TextContains {
		if !strings.Contains(a.Text, s) {
			t.Errorf("text does not contain %q:\n%s", s, a.Text)
		}
	}
	for _, s := range want.HTMLContains {
		if !strings.Contains(a.HTML, s) {
			t.Errorf("html does not contain %q:\n%s", s, a.HTML)
		}
	}
	if len(a.Attachments) != len(want.Attachments) {
		t.Fatalf("attachments = %+v, want %+v", a.Attachments, want.Attachments)
	}
	for i, w := range want.Attachments {
		g := a.Attachments[i]
		if g.Filename != w.Filename || g.ContentType != w.ContentType || g.Size != w.Size || len(g.SHA256) != 64 ||
			(w.SHA256 != "" && g.SHA256 != w.SHA256) {
			t.Errorf("attachment %d = %+v, want %+v with a sha256", i, g, w)
		}
	}
	if len(a.ParseErrors) != 0 {
		t.Errorf("clean sample has parse errors: %q", a.ParseErrors)
	}
}
