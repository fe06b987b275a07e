// Package forward delivers alerts to the outputs edgesink bridges to: MQTT,
// serial lines and whatever comes next. Every output is a Forwarder; Fanout
// sends each alert to all of them and is the sink's Handler.
//
// The contract: Forward returns nil only once the output has taken the alert
// for good (an MQTT PUBACK, a completed serial write). An error that may go
// away by itself (broker down, serial device unplugged, timeout) is marked
// with Temporary so the device is told to retry.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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

// Fanout sends every alert to all its forwarders at once and succeeds only
// when all of them did. It is the sink.Handler edgesink runs with.
type Fanout struct {
	forwarders []Forwarder
	log        *slog.Logger
}

var (
	_ sink.Handler = (*Fanout)(nil)
	_ sink.Outputs = (*Fanout)(nil)
)

// NewFanout returns a Fanout over fs.
func NewFanout(log *slog.Logger, fs ...Forwarder) *Fanout {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fanout{forwarders: fs, log: log}
}

// Outputs names the forwarders, for the sink's log line.
func (f *Fanout) Outputs() []string {
	names := make([]string, len(f.forwarders))
	for i, fw := range f.forwarders {
		names[i] = fw.Name()
	}
	return names
}

// Handle forwards a to every output concurrently. The error joins every
// output's failure; it is temporary when any of them is, since a retry can
// then succeed. An output that succeeded before another failed will see the
// alert again when the device retries (at-least-once; alerts carry an id).
func (f *Fanout) Handle(ctx context.Context, a *sink.Alert) error {
	if len(f.forwarders) == 0 {
		return nil
	}
	errs := make([]error, len(f.forwarders))
	var wg sync.WaitGroup
	for i, fw := range f.forwarders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("%s: panic: %v", fw.Name(), r)
				}
			}()
			start := time.Now()
			if err := fw.Forward(ctx, a); err != nil {
				errs[i] = fmt.Errorf("%s: %w", fw.Name(), err)
				f.log.Warn("output failed", "output", fw.Name(), "id", a.ID,
					"temporary", sink.Temporary(err), "err", err)
				return
			}
			f.log.Debug("output delivered", "output", fw.Name(), "id", a.ID, "took", time.Since(start))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Temporary marks err as one that may go away by itself: the sink answers
// 451 and the device retries.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return temporaryError{err}
}

type temporaryError struct{ error }

func (temporaryError) Temporary() bool { return true }
func (e temporaryError) Unwrap() error { return e.error }
