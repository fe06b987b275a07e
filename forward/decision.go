package forward

// Decision is where a routing rule sends one alert, made once when the alert
// is accepted (forward/route decides, the spool stores it with the alert).
type Decision struct {
	// Matched is false when no rule matched: the alert goes where it always
	// did (every output, each with its own template).
	Matched bool
	// Rule names the rule that matched, for log lines.
	Rule string
	// Drop: the rule sends the alert nowhere (outputs: none).
	Drop bool
	// Outputs names the outputs that deliver the alert; empty: every one.
	Outputs []string
	// Templates is the rule's template per output name (mqtt: the topic,
	// serial: the line); an output not named uses its own.
	Templates map[string]string
}

// Templated is implemented by outputs whose rendering a routing rule may
// choose per alert: With returns the output rendering with template
// (parsed once and cached by the output; its own placeholders as in
// Placeholders). The spool checks for it with ", ok" and falls back to the
// output itself.
type Templated interface {
	With(template string) (Forwarder, error)
}
