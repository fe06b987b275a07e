package mqtt

import (
	"context"
	"strings"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// RouteTopic parses a routing rule's topic template for a publisher whose
// base topic is base and site is site: {base} is filled in first, as in
// the topic setting, and every placeholder's value is one sanitized topic
// level when the alert is published.
func RouteTopic(base, site, tmpl string) (*forward.Template, error) {
	t, err := ParseTopic(strings.ReplaceAll(tmpl, "{base}", base))
	if err != nil {
		return nil, err
	}
	return t.WithSite(site), nil
}

// routedTopic is the publisher publishing on a routing rule's topic.
type routedTopic struct {
	p     *Publisher
	topic *forward.Template
}

var (
	_ forward.Templated = (*Publisher)(nil)
	_ forward.Starter   = routedTopic{}
)

// With implements forward.Templated: the publisher on topic template tmpl
// (parsed once, then cached; the rules of one config are few).
func (p *Publisher) With(tmpl string) (forward.Forwarder, error) {
	if r, ok := p.routed.Load(tmpl); ok {
		return r.(routedTopic), nil
	}
	t, err := RouteTopic(p.cfg.BaseTopic, p.cfg.Site, tmpl)
	if err != nil {
		return nil, err
	}
	r := routedTopic{p: p, topic: t}
	p.routed.Store(tmpl, r)
	return r, nil
}

func (r routedTopic) Name() string { return r.p.Name() }

func (r routedTopic) Forward(ctx context.Context, a *sink.Alert) error {
	return r.p.forward(ctx, a, r.topic)
}

func (r routedTopic) Start(ctx context.Context, a *sink.Alert) func(context.Context) error {
	return r.p.start(ctx, a, r.topic)
}

// Topic is the topic a would be published on.
func (r routedTopic) Topic(a *sink.Alert) string { return topicOf(r.topic, a) }
