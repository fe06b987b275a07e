// Package config is what every package's Config shares with the
// configuration file: an error that names the key at fault. A package
// validates its own settings and names its keys as the YAML file spells
// them ("max_line_length"); cmd/edgesink adds the section ("smtp.") and
// the line. Standard library only, so any package may import it.
package config

import "fmt"

// KeyError is a setting that cannot work. Key is the YAML name within the
// package's section, e.g. "max_line_length".
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// Bad returns a KeyError for key with a formatted message.
func Bad(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}
