package spool

import (
	"sync/atomic"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// Router decides where a new alert goes (forward/route's Table is one).
// It is asked once per alert, when the alert is accepted; its decision is
// stored with the alert, so a new Router never reroutes what is queued.
type Router interface {
	Decide(a *sink.Alert) forward.Decision
}

// routerHolder is the Router for new mail, swapped whole on SIGHUP.
type routerHolder struct{ p atomic.Pointer[Router] }

// SetRouter makes r decide for every alert accepted from now on; nil: no
// rules, every output takes every alert.
func (s *Spool) SetRouter(r Router) {
	if r == nil {
		s.router.p.Store(nil)
		return
	}
	s.router.p.Store(&r)
}

// routed is a decided route and the rule that made it, for log lines.
type decided struct {
	Route
	rule string
}

// routeFor decides, once, where a new alert goes; the route is stored with
// it. keep is false when a rule drops the alert (outputs: none).
func (s *Spool) routeFor(a *sink.Alert) (route decided, keep bool) {
	p := s.router.p.Load()
	if p == nil {
		return decided{Route: s.everyOutput}, true
	}
	d := (*p).Decide(a)
	if !d.Matched {
		return decided{Route: s.everyOutput}, true
	}
	if d.Drop {
		return decided{rule: d.Rule}, false
	}
	r := Route{Outputs: d.Outputs, Templates: d.Templates}
	if len(r.Outputs) == 0 {
		r.Outputs = s.everyOutput.Outputs
	}
	return decided{Route: r, rule: d.Rule}, true
}

// outFor is the output that delivers e: l.out, or l.out rendering with the
// template e's route chose for it.
func (l *lane) outFor(e *entry) forward.Forwarder {
	t := e.route.template(l.out.Name())
	if t == "" {
		return l.out
	}
	if tp, ok := l.out.(forward.Templated); ok {
		f, err := tp.With(t)
		if err == nil {
			return f
		}
		l.s.log.Warn("spool: the route's template does not parse; using the output's own", "output", l.out.Name(), "id", e.alert.ID, "err", err)
	}
	return l.out
}
