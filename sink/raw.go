package sink

import "context"

// rawKey is the context key of the raw mail; see WithRawMail.
type rawKey struct{}

// WithRawMail returns ctx carrying the raw message a device sent, as the
// SMTP side hands an alert to its Handler. A stage that wants the bytes
// (the status page keeps them for download and replay) reads them with
// RawMail; nothing else changes for stages that do not. The bytes are the
// SMTP server's buffer, valid until Handle returns and then reused for
// another mail: a stage that keeps them keeps a copy, and none modifies
// them.
func WithRawMail(ctx context.Context, raw []byte) context.Context {
	return context.WithValue(ctx, rawKey{}, raw)
}

// RawMail returns the raw message ctx carries, nil if none (an alert that
// did not come from SMTP: a replay, a synthetic one).
func RawMail(ctx context.Context) []byte {
	raw, _ := ctx.Value(rawKey{}).([]byte)
	return raw
}
