package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// TestJSONOnce: the encoding carried in the context is used for that very
// alert only; a copy of it, or no encoding, is encoded afresh.
func TestJSONOnce(t *testing.T) {
	a := &Alert{ID: "1", Subject: "motion"}
	marked := []byte(`{"carried":true}`)
	ctx := WithJSON(context.Background(), a, marked)
	if got, err := JSON(ctx, a); err != nil || !bytes.Equal(got, marked) {
		t.Errorf("JSON of the same alert = %s, %v; want the carried encoding", got, err)
	}
	b := *a
	want, _ := json.Marshal(&b)
	if got, err := JSON(ctx, &b); err != nil || !bytes.Equal(got, want) {
		t.Errorf("JSON of a copy = %s, %v; want %s", got, err, want)
	}
	if got, err := JSON(context.Background(), a); err != nil || bytes.Equal(got, marked) {
		t.Errorf("JSON without an encoding = %s, %v", got, err)
	}
}
