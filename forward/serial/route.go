package serial

import (
	"context"
	"fmt"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// routedLine is the port writing a routing rule's line template.
type routedLine struct {
	p    *Port
	tmpl *forward.Template
}

var _ forward.Templated = (*Port)(nil)

// With implements forward.Templated: the port writing lines of template
// tmpl (parsed once, then cached), cleaned and cut as every line is.
func (p *Port) With(tmpl string) (forward.Forwarder, error) {
	if r, ok := p.routed.Load(tmpl); ok {
		return r.(routedLine), nil
	}
	t, err := forward.ParseTemplate(tmpl)
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	r := routedLine{p: p, tmpl: t.WithSite(p.cfg.Site)}
	p.routed.Store(tmpl, r)
	return r, nil
}

func (r routedLine) Name() string { return r.p.Name() }

func (r routedLine) Forward(ctx context.Context, a *sink.Alert) error {
	return r.p.write(ctx, r.Line(a))
}

// Line renders a as the bytes written to the port.
func (r routedLine) Line(a *sink.Alert) []byte { return r.p.line(r.tmpl, a) }
