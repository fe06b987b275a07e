// Package sink is the SMTP side of edgesink: it accepts mail from devices on
// the LAN and turns each message into one Alert.
//
// The sink never relays mail. It hands every Alert to a Handler and answers
// the device only after the Handler returned: 250 when the handler accepted
// the alert, 4xx when it could not (the device keeps the mail and retries),
// 5xx when retrying cannot help. Every string in an Alert is valid UTF-8.
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
	Size        int          `json:"size"`
	ParseErrors []string     `json:"parse_errors"`
	// Event is what happened, decided once when the mail is accepted
	// (sink/classify) and stored with the alert; nil while no device
	// template knows the mail, and then left out of the JSON.
	Event *Event `json:"event,omitempty"`
}

// Event is the meaning of an alert: which kind of thing happened, on which
// channel, starting or ending. Type is one word of a closed vocabulary
// (motion, disk_failure, on_battery, …, other).
type Event struct {
	Type     string `json:"type"`
	State    string `json:"state,omitempty"` // start, stop, or empty for a one-off
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
