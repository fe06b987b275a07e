package classify

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Match is what a template asks of a mail: regular expressions (Go RE2
// syntax; write (?i) for case-insensitive) that must all match; an empty
// one asks nothing. Named groups (?P<channel>…), (?P<camera>…),
// (?P<detail>…) and (?P<state>…) fill the event's fields.
type Match struct {
	// Sender is matched against the envelope sender and each From address.
	Sender string `yaml:"sender" json:"sender,omitempty"`
	// Recipient is matched against each envelope recipient and To address.
	Recipient string `yaml:"recipient" json:"recipient,omitempty"`
	// Device is matched against the alert's device name.
	Device  string `yaml:"device" json:"device,omitempty"`
	Subject string `yaml:"subject" json:"subject,omitempty"`
	// Body is matched against the text (derived from the HTML for an
	// HTML-only mail), its first 4 KiB.
	Body string `yaml:"body" json:"body,omitempty"`
	// Text is matched against the subject and the body, one line apart.
	Text string `yaml:"text" json:"text,omitempty"`
}

// Rule is one outcome of a template: when its Match matches, the event is
// of Type, in State, with Detail.
type Rule struct {
	Match
	Type   string `json:"type"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// spec is a template as its data says it, built in or from the config.
type spec struct {
	Name string `json:"name"`
	// Vendor and Recognises describe the template for README's table.
	Vendor     string `json:"vendor,omitempty"`
	Recognises string `json:"recognises,omitempty"`
	// Fallback templates are tried after every other one.
	Fallback bool `json:"fallback,omitempty"`
	// Match recognises the vendor's mail; Extract only fills fields.
	Match   Match   `json:"match"`
	Extract []Match `json:"extract,omitempty"`
	// RulesFrom shares another template's rules (a camera and an NVR of
	// one vendor word their events alike).
	RulesFrom string `json:"rules_from,omitempty"`
	Rules     []Rule `json:"rules"`
}

// groupNames are the named groups a template may capture.
var groupNames = []string{"channel", "camera", "detail", "state"}

type field int

const (
	fieldSender field = iota
	fieldRecipient
	fieldDevice
	fieldSubject
	fieldBody
	fieldText
)

type matcher struct {
	field field
	expr  string
	// re is the compiled expression. The built-in templates' are compiled
	// on first use: most of them never see a mail that passes their
	// prefilter, and compiled all at start they held 0.7 MiB of a Pi
	// Zero's heap.
	re     func() *regexp.Regexp
	groups bool     // has named groups: capture, not just match
	names  uint8    // which: bit i for groupNames[i]
	lits   []string // one of them is in every match (prefilter.go)
	// need are sets one string of each of which is in every match, lits
	// among them (literalSets); ids are need numbered in the
	// classifier's litIndex, for the fields of one value. These and
	// prefix are worked out by litIndex.number, before the first mail.
	need [][]string
	ids  [][]int32
	// prefix are prefixLiterals, pre them in ids: the expression is run
	// from the first of them in the field, a byte before if back.
	prefix []string
	back   bool
	pre    []int32
}

type compiledMatch []matcher

type compiledRule struct {
	match              compiledMatch
	typ, state, detail string
}

type template struct {
	name     string
	fallback bool
	match    compiledMatch
	extract  []compiledMatch
	rules    []compiledRule
}

// compileMatch compiles m (lazy: the expressions on first use; they are
// checked now either way); errors name the key within key (e.g.
// "templates.2.subject").
func compileMatch(m Match, key string, lazy bool) (compiledMatch, error) {
	var out compiledMatch
	for _, f := range []struct {
		name  string
		field field
		expr  string
	}{
		{"sender", fieldSender, m.Sender}, {"recipient", fieldRecipient, m.Recipient},
		{"device", fieldDevice, m.Device}, {"subject", fieldSubject, m.Subject},
		{"body", fieldBody, m.Body}, {"text", fieldText, m.Text},
	} {
		if f.expr == "" {
			continue
		}
		parsed, err := syntax.Parse(f.expr, syntax.Perl)
		if err != nil {
			return nil, config.Bad(joinKey(key, f.name), "%v", err)
		}
		groups, names := false, uint8(0)
		for _, n := range parsed.CapNames() {
			if n == "" {
				continue
			}
			if !slices.Contains(groupNames, n) {
				return nil, config.Bad(joinKey(key, f.name), "named group (?P<%s>…): want channel, camera, detail or state", n)
			}
			groups = true
			names |= 1 << slices.Index(groupNames, n)
		}
		mt := matcher{field: f.field, expr: f.expr, groups: groups, names: names, lits: literalsOf(parsed)}
		if lazy {
			expr := f.expr // not mt: the closure would keep a copy of it
			mt.re = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
		} else {
			re, err := regexp.Compile(f.expr)
			if err != nil {
				return nil, config.Bad(joinKey(key, f.name), "%v", err)
			}
			mt.re = func() *regexp.Regexp { return re }
		}
		out = append(out, mt)
	}
	return out, nil
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// compile checks s and compiles its expressions. key prefixes the keys of
// its errors; rules are s's own (RulesFrom is resolved by the caller).
func (s spec) compile(key string, lazy bool) (*template, error) {
	t := &template{name: s.Name, fallback: s.Fallback}
	if s.Name == "" || sink.SafeName(s.Name) != s.Name || s.Name == TemplateNone {
		return nil, config.Bad(joinKey(key, "name"), "%q: want a name of lower-case letters, digits, '.', '_' or '-' (not %q)", s.Name, TemplateNone)
	}
	var err error
	if t.match, err = compileMatch(s.Match, key, lazy); err != nil {
		return nil, err
	}
	for i, m := range s.Extract {
		cm, err := compileMatch(m, fmt.Sprintf("%s.extract.%d", key, i), lazy)
		if err != nil {
			return nil, err
		}
		t.extract = append(t.extract, cm)
	}
	for i, r := range s.Rules {
		rkey := key
		if len(s.Rules) > 1 || key == "" {
			rkey = joinKey(key, fmt.Sprintf("rules.%d", i))
		}
		if !IsType(r.Type) {
			return nil, config.Bad(joinKey(rkey, "type"), "%q: want one of %s", r.Type, strings.Join(Types, ", "))
		}
		if !slices.Contains(States, r.State) {
			return nil, config.Bad(joinKey(rkey, "state"), "%q: want start, stop or none", r.State)
		}
		cm, err := compileMatch(r.Match, rkey, lazy)
		if err != nil {
			return nil, err
		}
		t.rules = append(t.rules, compiledRule{match: cm, typ: r.Type, state: r.State, detail: cleanDetail(r.Detail)})
	}
	if len(t.rules) == 0 {
		return nil, config.Bad(joinKey(key, "rules"), "a template needs at least one rule")
	}
	return t, nil
}

// maxBody and maxSubject bound the text templates look at: device mail
// says what happened near the top, and regular expressions cost per byte
// (a crafted 16 KiB body cost some templates 0.3 s).
const (
	maxBody    = 4 << 10
	maxSubject = 1 << 10
)

// mail is an alert's fields as templates see them, with what the
// prefilter knows of them, worked out when a template first asks: most
// templates look at the body and text only, and many mails are decided
// before the keyword fallback's text expressions. A mail is borrowed from
// mailPool; its buffers are bounded by maxSubject and maxBody.
type mail struct {
	x                   *litIndex
	senders, recipients []string
	device, subject     string
	body                string

	// text is the subject and the body, one line apart.
	text     []byte
	haveText bool
	// lowSenders and lowRecipients are lowerASCII of each value.
	lowSenders, lowRecipients []string
	haveLowAddr               bool
	// low is the lower-cased text; seen the literals of x that the
	// subject, body, text (one scan of low) and device hold.
	low, lowDevice             []byte
	seen                       [fieldText + 1]bits
	scannedText, scannedDevice bool
	// textAt and bodyAt are where each literal seen first starts in the
	// text and in the body, when sameLen: when lower-casing kept every
	// byte where it was.
	textAt, bodyAt []int32
	sameLen        bool
}

var mailPool = sync.Pool{New: func() any { return new(mail) }}

// newMail borrows a mail of a's fields, prefiltered with x: give it back
// with release.
func newMail(a *sink.Alert, x *litIndex) *mail {
	m := mailPool.Get().(*mail)
	m.x, m.device, m.subject, m.body = x, a.Device, a.Subject, a.Text
	if len(m.subject) > maxSubject {
		m.subject = m.subject[:maxSubject]
	}
	if strings.TrimSpace(m.body) == "" {
		m.body = a.HTML
	}
	if len(m.body) > maxBody {
		m.body = m.body[:maxBody]
	}
	m.senders = append(append(m.senders[:0], a.MailFrom), a.From...)
	m.recipients = append(append(m.recipients[:0], a.RcptTo...), a.To...)
	return m
}

// release gives m back; m is not used after.
func (m *mail) release() {
	clear(m.senders)
	clear(m.recipients)
	clear(m.lowSenders)
	clear(m.lowRecipients)
	m.x, m.device, m.subject, m.body = nil, "", "", ""
	m.haveText, m.haveLowAddr, m.scannedText, m.scannedDevice = false, false, false, false
	mailPool.Put(m)
}

// textBytes is the text field.
func (m *mail) textBytes() []byte {
	if !m.haveText {
		m.text = append(append(append(m.text[:0], m.subject...), '\n'), m.body...)
		m.haveText = true
	}
	return m.text
}

// addresses are the values of field f (sender or recipient), and each
// lower-cased.
func (m *mail) addresses(f field) (vs, low []string) {
	if !m.haveLowAddr {
		m.lowSenders = m.lowSenders[:0]
		for _, v := range m.senders {
			m.lowSenders = append(m.lowSenders, lowerASCII(v))
		}
		m.lowRecipients = m.lowRecipients[:0]
		for _, v := range m.recipients {
			m.lowRecipients = append(m.lowRecipients, lowerASCII(v))
		}
		m.haveLowAddr = true
	}
	if f == fieldSender {
		return m.senders, m.lowSenders
	}
	return m.recipients, m.lowRecipients
}

// literals is the set of m.x's literals that field f (device, subject,
// body or text) holds.
func (m *mail) literals(f field) bits {
	x := m.x
	if f == fieldDevice {
		if !m.scannedDevice {
			m.lowDevice = lowerInto(m.lowDevice[:0], m.device)
			b := m.clearBits(fieldDevice)
			x.scan(m.lowDevice, func(id int32, _ int) { b.set(id) })
			m.scannedDevice = true
		}
		return m.seen[fieldDevice]
	}
	if !m.scannedText {
		m.low = lowerInto(m.low[:0], m.subject)
		split := len(m.low)
		m.low = lowerInto(append(m.low, '\n'), m.body)
		subject, body, text := m.clearBits(fieldSubject), m.clearBits(fieldBody), m.clearBits(fieldText)
		m.sameLen = split == len(m.subject) && len(m.low) == len(m.subject)+1+len(m.body)
		if n := len(x.lits); cap(m.textAt) < n {
			m.textAt, m.bodyAt = make([]int32, n), make([]int32, n)
		}
		textAt, bodyAt := m.textAt[:len(x.lits)], m.bodyAt[:len(x.lits)]
		x.scan(m.low, func(id int32, at int) {
			if !text.has(id) {
				text.set(id)
				textAt[id] = int32(at)
			}
			if at+len(x.lits[id]) <= split {
				subject.set(id)
			} else if at > split && !body.has(id) {
				body.set(id)
				bodyAt[id] = int32(at - split - 1)
			}
		})
		m.scannedText = true
	}
	return m.seen[f]
}

// from is where in field f (subject, body or text) mt can first match:
// the first of its prefix literals, a byte before if it looks back.
func (m *mail) from(f field, mt *matcher) int {
	if mt.pre == nil || !m.sameLen {
		return 0
	}
	bits, at := m.literals(f), m.textAt
	if f == fieldBody {
		at = m.bodyAt
	}
	first := -1
	for _, id := range mt.pre {
		if bits.has(id) && (first < 0 || int(at[id]) < first) {
			first = int(at[id])
		}
	}
	if mt.back {
		first--
	}
	return max(first, 0)
}

func (m *mail) clearBits(f field) bits {
	n := m.x.words()
	b := m.seen[f]
	if cap(b) < n {
		b = make(bits, n)
	}
	b = b[:n]
	clear(b)
	m.seen[f] = b
	return b
}

func (m *mail) value(f field) string {
	switch f {
	case fieldDevice:
		return m.device
	case fieldSubject:
		return m.subject
	}
	return m.body
}

// captures is what named groups found; the first non-empty value wins.
type captures struct{ channel, camera, detail, state string }

// filled is the groups that have a value, as matcher.names: an
// expression whose groups all have one need not capture.
func (c *captures) filled() uint8 {
	var f uint8
	for i, v := range [...]string{c.channel, c.camera, c.detail, c.state} {
		if v != "" {
			f |= 1 << i
		}
	}
	return f
}

// wants reports whether set would keep a value of name.
func (c *captures) wants(name string) bool {
	switch name {
	case "channel":
		return c.channel == ""
	case "camera":
		return c.camera == ""
	case "detail":
		return c.detail == ""
	case "state":
		return c.state == ""
	}
	return false
}

func (c *captures) set(name, v string) {
	var p *string
	switch name {
	case "channel":
		p = &c.channel
	case "camera":
		p = &c.camera
	case "detail":
		p = &c.detail
	case "state":
		p = &c.state
	default:
		return
	}
	if *p == "" {
		*p = cleanValue(v)
	}
}

// matches reports whether every matcher of cm matches m, capturing named
// groups into c.
func (cm compiledMatch) matches(m *mail, c *captures) bool {
	for i := range cm {
		if !cm[i].matchMail(m, c) {
			return false
		}
	}
	return true
}

// captures reports whether cm, matching, could fill a group c lacks.
func (cm compiledMatch) captures(c *captures) bool {
	filled := c.filled()
	for i := range cm {
		if cm[i].names&^filled != 0 {
			return true
		}
	}
	return false
}

func (mt *matcher) matchMail(m *mail, c *captures) bool {
	switch mt.field {
	case fieldSender, fieldRecipient:
		vs, low := m.addresses(mt.field)
		for i, v := range vs {
			if mt.maybe(low[i]) && mt.matchString(v, c) {
				return true
			}
		}
		return false
	case fieldText:
		if mt.ids != nil && !m.literals(fieldText).all(mt.ids) {
			return false
		}
		text := m.textBytes()
		return mt.matchBytes(text, m.from(fieldText, mt), c)
	}
	if mt.ids != nil && !m.literals(mt.field).all(mt.ids) {
		return false
	}
	from := 0
	if mt.field != fieldDevice {
		from = m.from(mt.field, mt)
	}
	return mt.matchString(m.value(mt.field)[from:], c)
}

// maybe is the prefilter: false when lower lacks every literal of one of
// the sets every match contains one of.
func (mt matcher) maybe(lower string) bool {
	return containsAll(lower, mt.need)
}

func (mt *matcher) matchString(s string, c *captures) bool {
	re := mt.re()
	if !mt.groups || mt.names&^c.filled() == 0 {
		return re.MatchString(s)
	}
	idx := re.FindStringSubmatchIndex(s)
	if idx == nil {
		return false
	}
	for i, name := range re.SubexpNames() {
		if name != "" && idx[2*i] >= 0 {
			c.set(name, s[idx[2*i]:idx[2*i+1]])
		}
	}
	return true
}

// matchBytes is matchString on b[from:].
func (mt *matcher) matchBytes(b []byte, from int, c *captures) bool {
	b = b[from:]
	re := mt.re()
	if !mt.groups || mt.names&^c.filled() == 0 {
		return re.Match(b)
	}
	idx := re.FindSubmatchIndex(b)
	if idx == nil {
		return false
	}
	for i, name := range re.SubexpNames() {
		if name != "" && idx[2*i] >= 0 && c.wants(name) {
			c.set(name, string(b[idx[2*i]:idx[2*i+1]]))
		}
	}
	return true
}

// event tries t on m. identify false skips t's own Match (a device whose
// template is fixed by the devices map).
func (t *template) event(m *mail, identify bool) *sink.Event {
	var c captures
	if identify && !t.match.matches(m, &c) {
		return nil
	}
	for _, r := range t.rules {
		if !r.match.matches(m, &c) {
			continue
		}
		for _, x := range t.extract {
			if x.captures(&c) {
				x.matches(m, &c)
			}
		}
		ev := &sink.Event{Type: r.typ, State: r.state, Channel: c.channel, Camera: c.camera,
			Detail: r.detail, Template: t.name}
		if ev.Detail == "" {
			ev.Detail = cleanDetail(c.detail)
		}
		if st := stateWord(c.state); st != "" {
			ev.State = st
		}
		return ev
	}
	return nil
}

// stateWord maps what a mail says about an event's course to a State.
func stateWord(s string) string {
	switch strings.ToLower(s) {
	case "start", "started", "begin", "began", "active", "triggered", "on", "alarm", "open", "opened":
		return StateStart
	case "stop", "stopped", "end", "ended", "inactive", "off", "cleared", "clear", "restored", "recovered", "normal", "closed":
		return StateStop
	}
	return ""
}

// maxValue bounds a captured channel, camera or detail, in bytes.
const maxValue = 64

// cleanValue makes a captured value fit for JSON and a display: valid
// UTF-8, no control characters, runs of white space collapsed (devices pad
// their values with spaces), trimmed, at most maxValue bytes.
func cleanValue(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "") {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			if b.Len()+1+utf8.RuneLen(r) > maxValue {
				break
			}
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > maxValue {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// cleanDetail makes a detail one lower-case word: person, vehicle, face…
func cleanDetail(s string) string {
	d := strings.ReplaceAll(strings.ToLower(cleanValue(s)), " ", "_")
	switch d {
	case "human", "people", "pedestrian", "body":
		return "person"
	case "car", "motor_vehicle", "vehicles":
		return "vehicle"
	case "dog_cat", "pet", "animal":
		return "animal"
	}
	return d
}
