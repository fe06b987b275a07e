package smtpd

import (
	"bytes"
	"testing"

	"github.com/emersion/go-sasl"
)

// FuzzLoginServer drives the LOGIN server with arbitrary responses: it
// never panics, asks at most two questions, and authenticates exactly the
// user name and password it was given.
func FuzzLoginServer(f *testing.F) {
	f.Add([]byte("cam-garage"), []byte("s3cret"), true)
	f.Add([]byte(""), []byte(""), false)
	f.Add([]byte("\x00\xff"), []byte("pass\r\nword"), true)
	f.Fuzz(func(t *testing.T, user, pass []byte, initial bool) {
		var gotUser, gotPass string
		calls := 0
		l := newLoginServer(func(u, p string) error { calls++; gotUser, gotPass = u, p; return nil })
		var first []byte
		if initial {
			first = user
		}
		ch, done, err := l.Next(first)
		if err != nil || done {
			t.Fatalf("first step: %q %v %v", ch, done, err)
		}
		if !initial {
			if !bytes.Equal(ch, loginUserChallenge) {
				t.Fatalf("first challenge %q", ch)
			}
			if ch, done, err = l.Next(user); err != nil || done || !bytes.Equal(ch, loginPassChallenge) {
				t.Fatalf("after user: %q %v %v", ch, done, err)
			}
		} else if !bytes.Equal(ch, loginPassChallenge) {
			t.Fatalf("challenge after initial response %q", ch)
		}
		if _, done, err = l.Next(pass); !done || err != nil {
			t.Fatalf("after password: %v %v", done, err)
		}
		if calls != 1 || gotUser != string(user) || gotPass != string(pass) {
			t.Fatalf("authenticated %q/%q (%d calls), want %q/%q", gotUser, gotPass, calls, user, pass)
		}
		if _, _, err := l.Next([]byte("more")); err == nil {
			t.Fatal("a response after completion was accepted")
		}
	})
}

// FuzzPlainServer feeds arbitrary initial responses to the PLAIN server as
// the session sets it up: no panic, and success only for the exact
// credentials.
func FuzzPlainServer(f *testing.F) {
	f.Add([]byte("\x00cam-garage\x00s3cret"))
	f.Add([]byte("cam-garage\x00cam-garage\x00s3cret"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte("no separators"))
	f.Fuzz(func(t *testing.T, resp []byte) {
		ok := false
		srv := sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return errAuthFailed
			}
			if user == "cam-garage" && pass == "s3cret" {
				ok = true
				return nil
			}
			return errAuthFailed
		})
		_, done, err := srv.Next(resp)
		if err == nil && done && !ok {
			t.Fatalf("%q accepted without the right credentials", resp)
		}
		if ok {
			parts := bytes.Split(resp, []byte{0})
			if len(parts) != 3 || string(parts[1]) != "cam-garage" || string(parts[2]) != "s3cret" {
				t.Fatalf("%q accepted", resp)
			}
		}
	})
}
