package main

import (
	"reflect"
	"strings"
	"testing"
)

// TestListenLists: smtp.listen and smtp.tls.listen_implicit take one
// address (as before) or a list; bad lists name the key and line.
func TestListenLists(t *testing.T) {
	for _, tt := range []struct {
		name, yaml     string
		plain, implict Addrs
		err            string
	}{
		{name: "one address", yaml: "smtp:\n  listen: 0.0.0.0:25\n", plain: Addrs{"0.0.0.0:25"}},
		{name: "a list", yaml: "smtp:\n  listen: [0.0.0.0:25, 0.0.0.0:587, \"0.0.0.0:2525\"]\n  tls:\n    listen_implicit:\n      - 0.0.0.0:465\n",
			plain: Addrs{"0.0.0.0:25", "0.0.0.0:587", "0.0.0.0:2525"}, implict: Addrs{"0.0.0.0:465"}},
		{name: "implicit one address", yaml: "smtp:\n  tls:\n    listen_implicit: 0.0.0.0:465\n", plain: Addrs{"127.0.0.1:2525"}, implict: Addrs{"0.0.0.0:465"}},
		{name: "empty list", yaml: "smtp:\n  listen: []\n", err: "line 2: smtp.listen: no address"},
		{name: "twice", yaml: "smtp:\n  listen: [0.0.0.0:25, 0.0.0.0:25]\n", err: `line 2: smtp.listen: "0.0.0.0:25" listed twice`},
		{name: "bad entry", yaml: "smtp:\n  listen:\n    - 0.0.0.0:25\n    - port 587\n", err: "line 2: smtp.listen"},
		{name: "plain and implicit", yaml: "smtp:\n  listen: [0.0.0.0:25, 0.0.0.0:465]\n  tls:\n    listen_implicit: [0.0.0.0:465]\n",
			err: "line 4: smtp.tls.listen_implicit: \"0.0.0.0:465\" is on smtp.listen too"},
		{name: "a map", yaml: "smtp:\n  listen: {a: b}\n", err: "line 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.yaml))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.SMTP.Listen, tt.plain) || !reflect.DeepEqual(cfg.SMTP.TLS.ListenImplicit, tt.implict) {
				t.Errorf("listen %q, implicit %q", cfg.SMTP.Listen, cfg.SMTP.TLS.ListenImplicit)
			}
		})
	}
}
