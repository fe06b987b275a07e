package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decodeYAML decodes a configuration file onto cfg, whose sections are the
// packages' own Config structs: plain time.Duration and integer fields, so
// that no package imports the YAML library. Before yaml.v3 decodes, one walk
// over the document, guided by cfg's type, does what those plain types
// cannot:
//   - a time.Duration is written "30s", "5m", "1h30m";
//   - an integer field tagged unit:"bytes" is a size: 25MiB, 512KiB, 10MB;
//   - a netip.Prefix is a network (192.168.1.0/24) or one address;
//   - a key the struct does not have is an error.
//
// Every error names the line.
func decodeYAML(data []byte, cfg any) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return tidyYAMLError(err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	if err := prepareNode(doc.Content[0], reflect.TypeOf(cfg).Elem(), "", ""); err != nil {
		return err
	}
	if err := doc.Decode(cfg); err != nil {
		return tidyYAMLError(err)
	}
	return nil
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	prefixType   = reflect.TypeOf(netip.Prefix{})
)

// prepareNode checks n against t (the field's type, unit its unit tag, key
// its dotted name) and rewrites durations, sizes and networks into the
// form yaml.v3 decodes into plain Go types.
func prepareNode(n *yaml.Node, t reflect.Type, unit, key string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // the zero value, as yaml.v3 has it
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return nil // yaml.v3 reports the type error
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 5m, 1h)", n.Line, n.Value)
		}
		n.Value, n.Tag, n.Style = d.String(), "!!str", 0
	case unit == "bytes":
		if n.Kind != yaml.ScalarNode {
			return nil
		}
		v, err := parseByteSize(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		n.Value, n.Tag, n.Style = strconv.FormatInt(v, 10), "!!int", 0
	case t == prefixType:
		if n.Kind != yaml.ScalarNode {
			return nil
		}
		p, err := parsePrefix(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, key, err)
		}
		n.Value, n.Tag, n.Style = p.String(), "!!str", 0
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			f, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: field %s not found in %s", k.Line, k.Value, cmp.Or(key, "the file"))
			}
			if err := prepareNode(n.Content[i+1], f.Type, f.Tag.Get("unit"), joinKey(key, k.Value)); err != nil {
				return err
			}
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			if err := prepareNode(c, t.Elem(), unit, key); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := prepareNode(n.Content[i+1], t.Elem(), unit, joinKey(key, n.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlFields maps the yaml names of t's fields to the fields, the fields
// of inline structs included, as yaml.v3 decodes them.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-":
		case strings.Contains(opts, "inline"):
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
		case name == "":
			out[strings.ToLower(f.Name)] = f
		default:
			out[name] = f
		}
	}
	return out
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// parseByteSize reads a size written as a number of bytes or with a unit:
// 512KiB, 25MiB, 10MB.
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 25MiB, 512KiB, 1000000)", s)
	}
	return n * mult, nil
}
