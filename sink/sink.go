// Package sink is the contract between the two halves of edgesink: what
// the mail side (sink/smtpd, sink/extract, sink/classify) hands over and what
// the delivery side (forward/...) takes. Alert and Event are the data, Handler
// is the one interface every stage implements, and errors.go is the small
// vocabulary that decides whether a device is told to retry or to give up.
//
// Standard library only: an output never compiles in go-smtp, enmime or
// bcrypt (TestDependencies keeps it so). Every string in an Alert is valid
// UTF-8.
package sink

import (
	"context"
	"time"
)

// Alert is what edgesink extracted from one mail. Its JSON form is the
// payload published to MQTT, so field names are part of the public contract.
type Alert struct {
	ID          string       `json:"id"`
	ReceivedAt  time.Time    `json:"received_at"`
	RemoteAddr  string       `json:"remote_addr"`
	Helo        string       `json:"helo"`
	MailFrom    string       `json:"mail_from"`
	RcptTo      []string     `json:"rcpt_to"`
	From        []string     `json:"from"`
	To          []string     `json:"to"`
	Subject     string       `json:"subject"`
	Text        string       `json:"text"`
	HTML        string       `json:"html"`
	Attachments []Attachment `json:"attachments"`
	Device      string       `json:"device"`
	// DisplayName is the device's name for displays, from the devices map
	// (sink/classify); empty when the map gives none.
	DisplayName string `json:"display_name,omitempty"`
	// AuthUser is the SMTP login the mail came with, empty without one.
	AuthUser    string   `json:"auth_user,omitempty"`
	Size        int      `json:"size"`
	ParseErrors []string `json:"parse_errors"`
	// Event is what happened, decided once when the mail is accepted
	// (sink/classify) and stored with the alert. The classify stage gives
	// every alert one (type other, template none when nothing recognised
	// the mail); only an alert that never passed it has none.
	Event *Event `json:"event,omitempty"`

	// Set only on the follow-up alert that closes a coalescing window
	// (forward/spool): how many alerts of the same device, channel and
	// event type were folded into it, when the first and the last of them
	// arrived, and their ids, so a consumer can account for every mail.
	Count     int       `json:"count,omitempty"`
	FirstAt   time.Time `json:"first_at,omitzero"`
	LastAt    time.Time `json:"last_at,omitzero"`
	FoldedIDs []string  `json:"folded_ids,omitempty"`
	// Synthetic marks an alert no mail carried: the stop edgesink sends
	// when a start was never followed by one (coalesce.auto_stop).
	Synthetic bool `json:"synthetic,omitempty"`
	// ReplayOf names the dead letter this alert was replayed from.
	ReplayOf string `json:"replay_of,omitempty"`
}

// Event is the meaning of an alert: which kind of thing happened, on which
// channel, starting or ending. Type is one word of a closed vocabulary
// (motion, disk_failure, on_battery, …, other).
type Event struct {
	Type     string `json:"type"`
	State    string `json:"state"` // start, stop, or none for a one-off notice
	Channel  string `json:"channel,omitempty"`
	Camera   string `json:"camera,omitempty"`
	Detail   string `json:"detail,omitempty"`   // e.g. person, vehicle
	Template string `json:"template,omitempty"` // the device template that decided it
}

// Attachment describes one attached or inline part. Its bytes are not kept in
// the alert: outputs publish the metadata, and sha256 lets a consumer match a
// file it fetched elsewhere.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
	SHA256      string `json:"sha256"`
	// Data holds the bytes of an image (recognised by its bytes, whatever
	// its declared type), set by sink/extract and taken out again by the
	// snapshot stage (forward/hass) before the alert is queued. It is never
	// encoded: not in the published JSON, not in the spool's record.
	Data []byte `json:"-"`
}

// Handler receives every alert the sink accepts.
//
// Handle must return only once the alert is safe: delivered to every output
// or held by something that will deliver it. A nil error makes the sink answer
// 250; the device then forgets the mail. An error with a Temporary() bool
// method that reports true, or a context deadline, makes the sink answer 451
// (the device retries); any other error is answered with 554.
type Handler interface {
	Handle(ctx context.Context, a *Alert) error
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(ctx context.Context, a *Alert) error

// Handle calls f(ctx, a).
func (f HandlerFunc) Handle(ctx context.Context, a *Alert) error { return f(ctx, a) }

var _ Handler = HandlerFunc(nil)
