package sink

import (
	"context"
	"encoding/json"
)

// An alert is encoded as JSON by several stages (the spool's record, the
// MQTT payload, the status page) and does not change once it is handed to
// the queue. JSON encodes it once; WithJSON carries the encoding beside
// it, in the context, to the stages after.

type jsonKey struct{}

type encoded struct {
	a    *Alert
	data []byte
}

// WithJSON returns ctx carrying data, a's JSON as json.Marshal gives it.
// Whoever reads it must not change it.
func WithJSON(ctx context.Context, a *Alert, data []byte) context.Context {
	return context.WithValue(ctx, jsonKey{}, encoded{a: a, data: data})
}

// JSON returns a's encoding: the one ctx carries for this very alert (not
// a copy of it), else json.Marshal(a).
func JSON(ctx context.Context, a *Alert) ([]byte, error) {
	if e, ok := ctx.Value(jsonKey{}).(encoded); ok && e.a == a {
		return e.data, nil
	}
	return json.Marshal(a)
}
