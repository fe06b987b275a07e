package guard

import (
	"fmt"
	"testing"
	"time"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8025": true, "[::1]:1883": true, "localhost:25": true, "127.8.9.1:1": true,
		"0.0.0.0:8025": false, ":8025": false, "192.168.1.2:1883": false, "[::]:25": false, "nonsense": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestFailures: failures from one address add up and are forgotten at a
// login; another address is counted apart; the table never grows past its
// bound; the delay grows with the count up to its ceiling.
func TestFailures(t *testing.T) {
	f := NewFailures(3)
	for want := 1; want <= 3; want++ {
		if n := f.Fail("10.0.0.9"); n != want {
			t.Fatalf("failure %d counted as %d", want, n)
		}
	}
	if n := f.Fail("10.0.0.8"); n != 1 {
		t.Errorf("another address starts at %d", n)
	}
	f.Forget("10.0.0.9")
	if n := f.Fail("10.0.0.9"); n != 1 {
		t.Errorf("after a login the count goes on at %d", n)
	}
	f.by["10.0.0.7"] = failure{n: 5, last: time.Now().Add(-Memory - time.Minute)}
	if n := f.Fail("10.0.0.7"); n != 1 {
		t.Errorf("an address last failing long ago starts again at %d", n)
	}
	for i := range 10 {
		f.Fail(fmt.Sprintf("10.1.0.%d", i))
	}
	if len(f.by) > 3 {
		t.Errorf("the table holds %d addresses, bound 3", len(f.by))
	}
	if d := Delay(3, time.Second, 10*time.Second); d != 3*time.Second {
		t.Errorf("Delay(3) = %v", d)
	}
	if d := Delay(30, time.Second, 10*time.Second); d != 10*time.Second {
		t.Errorf("Delay(30) = %v, want the ceiling", d)
	}
}
