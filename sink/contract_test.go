package sink

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the layout's promises: the contract (this package)
// is standard library only; no output compiles in go-smtp, enmime or
// golang.org/x/crypto; and every third-party library is imported by exactly
// one package of edgesink, the one that wraps it.
func TestDependencies(t *testing.T) {
	deps := func(pkgs ...string) []string {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", pkgs, err)
		}
		return strings.Fields(string(out))
	}
	for _, d := range deps(".") {
		if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") && d != "github.com/edgesink/edgesink/sink" {
			t.Errorf("the contract package sink depends on %s: it must be standard library only", d)
		}
	}
	for _, d := range deps("../forward/...", "./classify") {
		for _, banned := range []string{"github.com/emersion/", "github.com/jhillyerd/", "golang.org/x/crypto/"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("an output or stage after extraction depends on %s", d)
			}
		}
	}

	owner := map[string]string{
		"github.com/emersion/go-smtp":         "github.com/edgesink/edgesink/sink/smtpd",
		"github.com/jhillyerd/enmime/v2":      "github.com/edgesink/edgesink/sink/extract",
		"github.com/eclipse/paho.mqtt.golang": "github.com/edgesink/edgesink/forward/mqtt",
		"go.bug.st/serial":                    "github.com/edgesink/edgesink/forward/serial",
		"github.com/mochi-mqtt/server/v2":     "github.com/edgesink/edgesink/forward/broker",
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			for lib, pkg := range owner {
				if (imp == lib || strings.HasPrefix(imp, lib+"/")) && f[0] != pkg {
					t.Errorf("%s imports %s, which only %s may", f[0], imp, pkg)
				}
			}
		}
	}
}
