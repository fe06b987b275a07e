package mqtt

import "github.com/edgesink/edgesink/forward"

var _ forward.Stater = (*Publisher)(nil)

// State is the broker connection: connected since, or down since, and the
// last connection error.
func (p *Publisher) State() forward.State { return p.state.State() }
