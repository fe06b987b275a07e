package mqtt

import (
	"context"
	"fmt"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesink/edgesink/sink"
)

// Messages other than alerts: what forward/hass publishes (discovery,
// states, snapshots) and listens to (Home Assistant's birth message), on
// the output's one connection, so they go out in order with the alerts and
// share its last will.

type subscription struct {
	filter  string
	handler func(topic string, payload []byte)
}

// Send publishes payload on topic at the output's QoS and returns at once;
// the function it returns waits for the broker's acknowledgement, with
// Forward's error contract. Messages sent one after the other go out in that
// order, after the alerts started before them.
func (p *Publisher) Send(topic string, payload []byte, retain bool) func(context.Context) error {
	client := p.current()
	if client == nil {
		return failed(sink.MarkTemporary(ErrNotConnected))
	}
	topic = SanitizeTopic(topic)
	tok := client.Publish(topic, p.cfg.QoS, retain, payload)
	return func(ctx context.Context) error {
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return fmt.Errorf("mqtt: publish to %s: no acknowledgement: %w", topic, ctx.Err())
		}
		if err := tok.Error(); err != nil {
			return sink.MarkTemporary(fmt.Errorf("mqtt: publish to %s: %w", topic, err))
		}
		return nil
	}
}

// Subscribe subscribes to filter on this and every later connection.
// handler runs on the client's goroutine: it must not block (hand the
// message to a goroutine of its own); a panic in it is recovered and
// logged.
func (p *Publisher) Subscribe(filter string, handler func(topic string, payload []byte)) {
	s := subscription{filter: filter, handler: handler}
	p.mu.Lock()
	p.subs = append(p.subs, s)
	client := p.client
	p.mu.Unlock()
	if client != nil {
		p.subscribe(client, s)
	}
}

// OnConnect registers f to be called after each connection is made and its
// subscriptions are sent. f runs on the connection loop: it must not block.
func (p *Publisher) OnConnect(f func()) {
	p.mu.Lock()
	p.onConnect = append(p.onConnect, f)
	p.mu.Unlock()
}

// Connected tells whether the output is connected now.
func (p *Publisher) Connected() bool { return p.current() != nil }

func (p *Publisher) subscribe(client paho.Client, s subscription) {
	client.Subscribe(s.filter, 1, func(_ paho.Client, m paho.Message) {
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("mqtt subscription handler panicked", "filter", s.filter, "panic", r)
			}
		}()
		s.handler(m.Topic(), m.Payload())
	})
	// The SUBACK is not waited for: a failed subscription shows as a
	// missing message, and the next connection subscribes again.
}
