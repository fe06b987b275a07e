package broker

import (
	"errors"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/edgesink/edgesink/forward/guard"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		f, sub string
		want   bool
	}{
		{"edgesink/#", "edgesink/cam/alert", true},
		{"edgesink/#", "edgesink", true}, // '#' includes its parent level
		{"edgesink/#", "edgesink/+/alert", true},
		{"edgesink/#", "edgesink/#", true},
		{"edgesink/#", "#", false},
		{"edgesink/#", "+/status", false},
		{"edgesink/#", "edgesinkx/status", false},
		{"cams/+/alarm", "cams/cam/alarm", true},
		{"cams/+/alarm", "cams/+/alarm", true},
		{"cams/+/alarm", "cams/#", false},
		{"cams/+/alarm", "cams/cam/alarm/x", false},
		{"cams/+/alarm", "cams/cam", false},
		{"edgesink/status", "edgesink/status", true},
		{"edgesink/status", "edgesink/+", false},
	}
	for _, tt := range tests {
		if got := covers(tt.f, tt.sub); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.f, tt.sub, got, tt.want)
		}
	}
}

func TestTopicFilters(t *testing.T) {
	got := Topics{Base: "edgesink/lab", Alert: "cams/{device}-{site}/alarm", Status: "status/lab"}.filters()
	want := []string{"edgesink/lab/#", "cams/+/alarm", "status/lab", "homeassistant/#"}
	if len(got) != len(want) {
		t.Fatalf("filters %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("filters %v, want %v", got, want)
		}
	}
}

// TestFailureWait: each failure from one address waits longer, up to a
// bound (the table itself is guard's, tested there).
func TestFailureWait(t *testing.T) {
	h := &authHook{failing: guard.NewFailures(maxFailingAddrs)}
	var got []time.Duration
	for range 12 {
		got = append(got, failureWait(h.failing.Fail("10.0.0.9")))
	}
	for i, d := range got {
		want := min(time.Duration(i+1)*time.Second, maxFailureDelay)
		if d != want {
			t.Errorf("failure %d waits %v, want %v", i+1, d, want)
		}
	}
}

func TestOpenOnLAN(t *testing.T) {
	hash := string(dummyHash)
	for _, tt := range []struct {
		cfg  Config
		want bool
	}{
		{Config{Listen: "127.0.0.1:1883"}, false},
		{Config{Listen: "localhost:1883"}, false},
		{Config{Listen: "[::1]:1883"}, false},
		{Config{Listen: "0.0.0.0:1883"}, true},
		{Config{Listen: ":1883"}, true},
		{Config{Listen: "192.168.1.2:1883"}, true},
		{Config{Listen: "127.0.0.1:1883", TLS: TLSListener{Listen: "0.0.0.0:8883"}}, true},
		{Config{Listen: "0.0.0.0:1883", Users: map[string]User{"ha": {Password: hash, Role: RoleReader}}}, false},
	} {
		if got := tt.cfg.OpenOnLAN(); got != tt.want {
			t.Errorf("%+v: OpenOnLAN %v, want %v", tt.cfg, got, tt.want)
		}
	}
	if _, err := Start(Config{Listen: "0.0.0.0:0"}, nil); err != ErrOpenOnLAN {
		t.Errorf("Start of an open broker on the LAN: %v, want ErrOpenOnLAN", err)
	}
}

// TestUnknownUserCostsABcrypt: an unknown user's password is compared with
// the dummy hash, so refusing it takes as long as a wrong password.
func TestUnknownUserCostsABcrypt(t *testing.T) {
	var checked [][]byte
	h := &authHook{cfg: Config{
		Users: map[string]User{"ha": {Password: "$2a$10$" + string(make([]byte, 53)), Role: RoleHomeAssistant}},
		CheckPassword: func(hash, _ []byte) error {
			checked = append(checked, hash)
			return errors.New("mismatch")
		},
	}}
	if reason := h.authenticate(&mochi.Client{ID: "c"}, "nobody", []byte("x")); reason != "unknown user" {
		t.Fatalf("unknown user: %q", reason)
	}
	if reason := h.authenticate(&mochi.Client{ID: "c"}, "ha", []byte("x")); reason != "wrong password" {
		t.Fatalf("wrong password: %q", reason)
	}
	if len(checked) != 2 || string(checked[0]) != string(dummyHash) {
		t.Errorf("hashes checked: %q, want the dummy hash for the unknown user, then the user's", checked)
	}
}

// TestOpenBrokerTakesAnyLogin: without users every client gets in, with or
// without a login, as before users existed; only the output's own name
// needs its password.
func TestOpenBrokerTakesAnyLogin(t *testing.T) {
	h := &authHook{cfg: Config{PublisherPassword: "p4ss"}}
	cl := &mochi.Client{ID: "c"}
	for _, user := range []string{"", "homeassistant", "anyone"} {
		if reason := h.authenticate(cl, user, []byte("whatever")); reason != "" {
			t.Errorf("open broker refused %q: %s", user, reason)
		}
		cl.Properties.Username = []byte(user)
		if k := h.kindOf(cl); k != kindOpen {
			t.Errorf("open broker: %q is kind %d, want every right", user, k)
		}
	}
	if reason := h.authenticate(cl, PublisherUser, []byte("whatever")); reason == "" {
		t.Error("open broker let a client in as edgesink's output with a wrong password")
	}
}
