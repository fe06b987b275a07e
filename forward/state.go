package forward

import (
	"sync"
	"time"
)

// State is how an output's connection stands, for the status page and
// /readyz: up or down since when, and the last error it met.
type State struct {
	Up        bool
	Since     time.Time // when Up last changed (the output's start if never)
	LastError string
	Detail    string // e.g. "open", "closed"
}

// Stater is implemented by outputs that know their connection state (MQTT:
// connected or not). Check it with a type assertion.
type Stater interface {
	State() State
}

// StateKeeper records a State safely for concurrent use; an output embeds
// one and reports through it.
type StateKeeper struct {
	mu sync.Mutex
	st State
}

// Set records up or down; err, when not nil, becomes the last error.
func (k *StateKeeper) Set(up bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.st.Since.IsZero() || k.st.Up != up {
		k.st.Up, k.st.Since = up, time.Now()
	}
	if err != nil {
		k.st.LastError = err.Error()
	}
}

// State returns what was recorded.
func (k *StateKeeper) State() State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.st
}
