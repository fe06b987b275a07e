package sink

import (
	"context"
	"errors"
)

// The error vocabulary between the stages: whether the device is told to
// retry (4xx) or to give up (5xx) is decided by these, translated into a
// reply once, in sink/smtpd.

// ErrStorageFull is what a Handler returns when it has no room to hold
// another alert (queue full, disk full). The device is told 452 and retries.
var ErrStorageFull = errors.New("sink: no room to hold the alert")

// ErrStorageFailed is what a Handler returns when it could not store an
// alert (an I/O error, a read-only or failing disk). The device is told
// 451 4.3.0, a local problem, and retries; the cause goes to the log.
var ErrStorageFailed = errors.New("sink: could not store the alert")

// Temporary reports whether err says that trying again later may succeed: a
// context deadline or cancellation, or any error in the tree (errors.Join
// included) with a Temporary() bool method that reports true.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	if t, ok := err.(interface{ Temporary() bool }); ok && t.Temporary() {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return Temporary(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if Temporary(e) {
				return true
			}
		}
	}
	return false
}

// MarkTemporary marks err as one that may go away by itself: the sink answers
// 451 and the device retries.
func MarkTemporary(err error) error {
	if err == nil {
		return nil
	}
	return temporaryError{err}
}

type temporaryError struct{ error }

func (temporaryError) Temporary() bool { return true }
func (e temporaryError) Unwrap() error { return e.error }
