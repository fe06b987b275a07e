package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Addrs is a list of listen addresses (smtp.listen, smtp.tls.listen_implicit,
// --smtp-listen): devices come set to port 25, 587, 2525 or 465 and many
// cannot be changed, so one edgesink listens on all of them. In the file it
// is one address or a list; on the command line the flag is repeated.
type Addrs []string

// UnmarshalYAML takes one address (a string, as before lists) or a list.
func (a *Addrs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*a = nil
		if n.Value != "" {
			*a = Addrs{n.Value}
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*a = list
	return nil
}

// MarshalJSON writes one address as a string, as it was before lists (so
// configuration goldens of a one-port setup stay as they were).
func (a Addrs) MarshalJSON() ([]byte, error) {
	switch len(a) {
	case 0:
		return json.Marshal("")
	case 1:
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a Addrs) String() string { return strings.Join(a, ", ") }

// check reports an address that cannot be listened on, or one listed twice.
func (a Addrs) check() error {
	seen := map[string]bool{}
	for _, addr := range a {
		if err := checkHostPort(addr); err != nil {
			return err
		}
		if seen[addr] && !anyPort(addr) {
			return fmt.Errorf("%q listed twice", addr)
		}
		seen[addr] = true
	}
	return nil
}

// addrsFlag collects a repeated flag; the first use replaces the file's list.
type addrsFlag struct{ addrs Addrs }

func (f *addrsFlag) String() string { return f.addrs.String() }
func (f *addrsFlag) Set(v string) error {
	f.addrs = append(f.addrs, v)
	return nil
}

// anyPort: port 0, a port the kernel picks, so twice is no conflict.
func anyPort(addr string) bool { return strings.HasSuffix(addr, ":0") }
