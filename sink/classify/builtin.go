package classify

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sync"
)

// templateFiles are the built-in device templates, one file per vendor.
//
//go:embed templates/*.json
var templateFiles embed.FS

// builtinFile is the form of a file under templates/.
type builtinFile struct {
	Templates []spec `json:"templates"`
}

// BuiltinTemplate describes one built-in template (README's table,
// 'edgesink classify --templates').
type BuiltinTemplate struct {
	Name, Vendor, Recognises string
}

// builtins are the built-in templates, compiled once: a reload swaps the
// user's templates and devices, never these.
var builtins = sync.OnceValue(func() loaded {
	ts, info, err := loadBuiltins()
	return loaded{ts, info, err}
})

type loaded struct {
	templates []*template
	info      []BuiltinTemplate
	err       error
}

// builtinIndex is the built-in templates' literals, worked out when the
// first mail is classified: like the expressions, they are not needed by
// a sink that has no mail yet, and working them out allocates.
var builtinIndex = sync.OnceValue(func() *litIndex {
	x := newLitIndex()
	for _, t := range builtinTemplates() {
		x.number(t)
	}
	x.build()
	return x
})

func loadBuiltins() ([]*template, []BuiltinTemplate, error) {
	entries, err := templateFiles.ReadDir("templates")
	if err != nil {
		return nil, nil, err
	}
	var specs []spec
	for _, e := range entries {
		data, err := templateFiles.ReadFile(path.Join("templates", e.Name()))
		if err != nil {
			return nil, nil, err
		}
		var f builtinFile
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, nil, fmt.Errorf("classify: templates/%s: %w", e.Name(), err)
		}
		specs = append(specs, f.Templates...)
	}
	byName := map[string]spec{}
	for _, s := range specs {
		if _, dup := byName[s.Name]; dup {
			return nil, nil, fmt.Errorf("classify: built-in template %q defined twice", s.Name)
		}
		byName[s.Name] = s
	}
	var first, last []*template
	var info []BuiltinTemplate
	for _, s := range specs {
		if s.RulesFrom != "" {
			from, ok := byName[s.RulesFrom]
			if !ok {
				return nil, nil, fmt.Errorf("classify: template %q: rules_from %q: no such template", s.Name, s.RulesFrom)
			}
			s.Rules = append(append([]Rule{}, s.Rules...), from.Rules...)
			s.Extract = append(append([]Match{}, s.Extract...), from.Extract...)
		}
		t, err := s.compile("", true)
		if err != nil {
			return nil, nil, fmt.Errorf("classify: built-in template %q: %w", s.Name, err)
		}
		if t.fallback {
			last = append(last, t)
		} else {
			first = append(first, t)
		}
		info = append(info, BuiltinTemplate{Name: s.Name, Vendor: s.Vendor, Recognises: s.Recognises})
	}
	return append(first, last...), info, nil
}

// BuiltinTemplates lists the built-in templates in the order they are
// tried (the fallback last).
func BuiltinTemplates() []BuiltinTemplate {
	l := builtins()
	if l.err != nil {
		panic(l.err) // the embedded data is tested; a broken build must not start
	}
	return l.info
}

func builtinTemplates() []*template {
	l := builtins()
	if l.err != nil {
		panic(l.err)
	}
	return l.templates
}
