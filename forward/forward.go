// Package forward delivers alerts to the outputs edgesink bridges to: MQTT,
// serial lines and whatever comes next. Every output is a Forwarder; the
// spool (forward/spool) is the one engine that delivers to them.
//
// The contract: Forward returns nil only once the output has taken the alert
// for good (an MQTT PUBACK, a completed serial write). An error that may go
// away by itself (broker down, serial device unplugged, timeout) is marked
// with Temporary so the device is told to retry.
package forward

import (
	"context"

	"github.com/edgesink/edgesink/sink"
)

// Forwarder is one output.
type Forwarder interface {
	// Name identifies the output in logs, e.g. "mqtt" or "serial".
	Name() string
	// Forward delivers a. It must honour ctx and be safe for concurrent use.
	Forward(ctx context.Context, a *sink.Alert) error
}

// Starter is implemented by outputs that can have several alerts in flight
// while keeping them in the order they were started (MQTT: publishes on one
// connection go out in order). Start hands a over and returns at once; wait
// blocks until the output confirmed it, with Forward's error contract.
type Starter interface {
	Start(ctx context.Context, a *sink.Alert) (wait func(ctx context.Context) error)
}

// Func adapts a function to Forwarder.
type Func struct {
	ID string
	F  func(ctx context.Context, a *sink.Alert) error
}

// Name returns f.ID.
func (f Func) Name() string { return f.ID }

// Forward calls f.F.
func (f Func) Forward(ctx context.Context, a *sink.Alert) error { return f.F(ctx, a) }

var _ Forwarder = Func{}
