// Package route is edgesink's routing rules: an ordered list, first match
// wins, each rule a set of matchers (device, sender, recipient, subject,
// body, event type and state) and what to do with a matching alert (which
// outputs, which MQTT topic, which serial line). The rules are data: Compile
// checks and compiles them once, at start or on SIGHUP, and the Table it
// returns decides for each new alert (the spool stores the decision with
// the alert). An alert no rule matches goes where it always did.
package route

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// Output names and the words of a rule's outputs.
const (
	MQTT   = "mqtt"
	Serial = "serial"
	Both   = "both"
	None   = "none"
)

// Rule is one entry of the configuration file's routes list.
type Rule struct {
	Name  string `yaml:"name"` // for log lines; default "rule N" (N from 1)
	Match Match  `yaml:"match"`
	// Outputs is mqtt, serial, both or none (the alert is dropped, with a
	// log line); empty: every output.
	Outputs string `yaml:"outputs"`
	Topic   string `yaml:"topic"`  // MQTT topic template ({base} and placeholders); empty: mqtt.topic
	Serial  string `yaml:"serial"` // serial line template; empty: serial.template
}

// Match is what an alert must have for a rule to apply; every matcher
// given must match, an empty one matches everything. Globs are path.Match
// patterns (*, ?, [a-z]), case-insensitive; regexps are Go's RE2 syntax.
type Match struct {
	Device    string `yaml:"device"`    // glob on the device name
	Sender    string `yaml:"sender"`    // glob on the envelope sender (MAIL FROM)
	Recipient string `yaml:"recipient"` // glob; any envelope recipient
	Subject   string `yaml:"subject"`   // regexp, anywhere in the subject
	Body      string `yaml:"body"`      // regexp, anywhere in the text body
	Event     string `yaml:"event"`     // glob on the event type (motion, disk_failure, …)
	State     string `yaml:"state"`     // glob on the event state (start, stop, none)
}

// Env is what Compile checks the rules against.
type Env struct {
	// Outputs are the names of the configured outputs (mqtt, serial).
	Outputs []string
	// CheckTopic validates a topic template (nil: not checked).
	CheckTopic func(tmpl string) error
}

// Table is a compiled, immutable list of rules; safe for concurrent use.
type Table struct {
	rules []rule
}

type rule struct {
	name      string
	matchers  []func(a *sink.Alert) bool
	drop      bool
	outputs   []string
	templates map[string]string
}

// Compile checks rules and compiles them. Errors name the rule (counted
// from 1) and its key, as "rule 2: match.subject: …".
func Compile(rules []Rule, env Env) (*Table, error) {
	t := &Table{}
	for i, r := range rules {
		c, err := compile(r, env)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		c.name = r.Name
		if c.name == "" {
			c.name = fmt.Sprintf("rule %d", i+1)
		}
		t.rules = append(t.rules, c)
	}
	return t, nil
}

func compile(r Rule, env Env) (rule, error) {
	var c rule
	globs := []struct {
		key, pattern string
		values       func(a *sink.Alert) []string
	}{
		{"device", r.Match.Device, func(a *sink.Alert) []string { return []string{a.Device} }},
		{"sender", r.Match.Sender, func(a *sink.Alert) []string { return []string{a.MailFrom} }},
		{"recipient", r.Match.Recipient, func(a *sink.Alert) []string { return a.RcptTo }},
		{"event", r.Match.Event, func(a *sink.Alert) []string { return []string{eventOf(a).Type} }},
		{"state", r.Match.State, func(a *sink.Alert) []string { return []string{eventOf(a).State} }},
	}
	for _, g := range globs {
		if g.pattern == "" {
			continue
		}
		pattern, values := strings.ToLower(g.pattern), g.values
		if _, err := path.Match(pattern, ""); err != nil {
			return c, fmt.Errorf("match.%s: %q: %w", g.key, g.pattern, err)
		}
		c.matchers = append(c.matchers, func(a *sink.Alert) bool {
			return slices.ContainsFunc(values(a), func(v string) bool {
				ok, _ := path.Match(pattern, strings.ToLower(v))
				return ok
			})
		})
	}
	regexps := []struct {
		key, expr string
		value     func(a *sink.Alert) string
	}{
		{"subject", r.Match.Subject, func(a *sink.Alert) string { return a.Subject }},
		{"body", r.Match.Body, func(a *sink.Alert) string { return a.Text }},
	}
	for _, x := range regexps {
		if x.expr == "" {
			continue
		}
		re, err := regexp.Compile(x.expr)
		if err != nil {
			return c, fmt.Errorf("match.%s: %w", x.key, err)
		}
		value := x.value
		c.matchers = append(c.matchers, func(a *sink.Alert) bool { return re.MatchString(value(a)) })
	}

	switch strings.ToLower(r.Outputs) {
	case "":
		c.outputs = nil
	case None:
		c.drop = true
	case Both:
		c.outputs = []string{MQTT, Serial}
	case MQTT, Serial:
		c.outputs = []string{strings.ToLower(r.Outputs)}
	default:
		return c, fmt.Errorf("outputs: %q: want mqtt, serial, both or none", r.Outputs)
	}
	for _, o := range c.outputs {
		if !slices.Contains(env.Outputs, o) {
			return c, fmt.Errorf("outputs: %s: no %s output is configured (%s)", o, o, map[string]string{MQTT: "mqtt.broker", Serial: "serial.device"}[o])
		}
	}
	if c.drop && (r.Topic != "" || r.Serial != "") {
		return c, fmt.Errorf("outputs: none: a rule that drops the alert has no topic or serial template")
	}
	if r.Topic != "" {
		if env.CheckTopic != nil {
			if err := env.CheckTopic(r.Topic); err != nil {
				return c, fmt.Errorf("topic: %w", err)
			}
		}
		c.templates = map[string]string{MQTT: r.Topic}
	}
	if r.Serial != "" {
		if _, err := forward.ParseTemplate(r.Serial); err != nil {
			return c, fmt.Errorf("serial: %w", err)
		}
		if c.templates == nil {
			c.templates = map[string]string{}
		}
		c.templates[Serial] = r.Serial
	}
	return c, nil
}

func eventOf(a *sink.Alert) sink.Event {
	if a.Event == nil {
		return sink.Event{}
	}
	return *a.Event
}

// Len is the number of rules.
func (t *Table) Len() int { return len(t.rules) }

// Decide returns the first matching rule's decision; Matched is false when
// none matched (or t is nil).
func (t *Table) Decide(a *sink.Alert) forward.Decision {
	if t == nil {
		return forward.Decision{}
	}
	for _, r := range t.rules {
		if r.matches(a) {
			return forward.Decision{Matched: true, Rule: r.name, Drop: r.drop,
				Outputs: slices.Clone(r.outputs), Templates: r.templates}
		}
	}
	return forward.Decision{}
}

func (r rule) matches(a *sink.Alert) bool {
	for _, m := range r.matchers {
		if !m(a) {
			return false
		}
	}
	return true
}
