package forward

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/edgesink/edgesink/sink"
)

// fields are the placeholders a Template may use, each reading one value of
// an alert. Values are raw: the output escapes them for its medium.
var fields = map[string]func(a *sink.Alert) string{
	"id":              func(a *sink.Alert) string { return a.ID },
	"received_at":     func(a *sink.Alert) string { return a.ReceivedAt.Format(time.RFC3339) },
	"remote_addr":     func(a *sink.Alert) string { return a.RemoteAddr },
	"helo":            func(a *sink.Alert) string { return a.Helo },
	"mail_from":       func(a *sink.Alert) string { return a.MailFrom },
	"device":          func(a *sink.Alert) string { return a.Device },
	"subject":         func(a *sink.Alert) string { return a.Subject },
	"text_first_line": func(a *sink.Alert) string { return FirstLine(a.Text) },
	"from":            func(a *sink.Alert) string { return first(a.From) },
	"from_domain":     fromDomain,
	"to":              func(a *sink.Alert) string { return first(a.To) },
	"rcpt_to":         func(a *sink.Alert) string { return first(a.RcptTo) },
	"rcpt_local":      func(a *sink.Alert) string { return sink.LocalPart(first(a.RcptTo)) },
	"attachments":     func(a *sink.Alert) string { return strconv.Itoa(len(a.Attachments)) },
	"size":            func(a *sink.Alert) string { return strconv.Itoa(a.Size) },
	// The event sink/classify decided; empty when no template knew the mail.
	"event":   func(a *sink.Alert) string { return eventField(a, func(e *sink.Event) string { return e.Type }) },
	"state":   func(a *sink.Alert) string { return eventField(a, func(e *sink.Event) string { return e.State }) },
	"channel": func(a *sink.Alert) string { return eventField(a, func(e *sink.Event) string { return e.Channel }) },
	"camera":  func(a *sink.Alert) string { return eventField(a, func(e *sink.Event) string { return e.Camera }) },
	// How many mails the alert stands for: 1, or a follow-up's count.
	"count": func(a *sink.Alert) string { return strconv.Itoa(max(a.Count, 1)) },
	// The instance's site (TOPICS.md), not the mail's: set by the output
	// with WithSite.
	placeholderSite: nil,
}

const placeholderSite = "site"

func eventField(a *sink.Alert, f func(*sink.Event) string) string {
	if a.Event == nil {
		return ""
	}
	return f(a.Event)
}

// Placeholders lists the names a Template accepts, sorted.
func Placeholders() []string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Template is a text with {placeholder}s, parsed once and filled per alert.
type Template struct {
	parts []templatePart
	site  string // {site}
}

type templatePart struct {
	literal string
	field   func(a *sink.Alert) string // nil for a literal
	site    bool                       // {site}
}

// WithSite returns t filling {site} with site.
func (t *Template) WithSite(site string) *Template {
	c := *t
	c.site = site
	return &c
}

// ParseTemplate parses s. Unknown placeholders and unbalanced braces are
// errors, so a typo in the config is caught at start, not per alert.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{}
	rest := s
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.parts = append(t.parts, templatePart{literal: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("template %q: '}' without '{'", s)
		}
		if open > 0 {
			t.parts = append(t.parts, templatePart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("template %q: '{' without '}'", s)
		}
		name := rest[open+1 : open+end]
		f, ok := fields[name]
		if !ok {
			return nil, fmt.Errorf("template %q: unknown placeholder {%s} (known: %s)",
				s, name, strings.Join(Placeholders(), ", "))
		}
		t.parts = append(t.parts, templatePart{field: f, site: name == placeholderSite})
		rest = rest[open+end+1:]
	}
	return t, nil
}

// Execute fills the template from a, passing every placeholder's value
// through escape (nil leaves values as they are).
func (t *Template) Execute(a *sink.Alert, escape func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		var v string
		switch {
		case p.site:
			v = t.site
		case p.field == nil:
			b.WriteString(p.literal)
			continue
		default:
			v = p.field(a)
		}
		if escape != nil {
			v = escape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// FirstLine returns the first line of text that says something (has a
// letter or digit), trimmed: rules such as the "-----" html2text draws under
// headings are skipped.
func FirstLine(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.IndexFunc(line, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) >= 0 {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// fromDomain is the domain of the header sender, or of the envelope sender
// when the mail had no usable From header.
func fromDomain(a *sink.Alert) string {
	if d := sink.DomainPart(first(a.From)); d != "" {
		return d
	}
	return sink.DomainPart(a.MailFrom)
}
