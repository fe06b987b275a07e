package status

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"github.com/edgesink/edgesink/forward/guard"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Sessions: a browser gets a random session id in an HttpOnly,
// SameSite=Strict cookie (after a login when one is needed; at its first
// visit otherwise), and each session has its own random token that every
// POST must carry (the forms hold it in a hidden field). The server keeps
// both in RAM: a restart logs everyone out.

const (
	sessionCookie   = "edgesink_session"
	sessionLifetime = 12 * time.Hour
	maxSessions     = 64 // the oldest is forgotten beyond

	// A failed login is answered after failureDelay times the failures
	// from that address (remembered guard.Memory), at most maxFailureDelay,
	// as the embedded broker does.
	failureDelay    = 500 * time.Millisecond
	maxFailureDelay = 10 * time.Second
	maxFailingAddrs = 1024
)

type session struct {
	id      string
	user    string // "" for an anonymous visitor
	token   string // the POST token
	created time.Time
}

type auth struct {
	cfg    Config
	check  func(hash, password string) error
	secure bool // cookies only over HTTPS

	mu       sync.Mutex
	sessions map[string]*session
	failing  *guard.Failures
	basicOK  map[string][32]byte // user -> sha256 of the last password that checked (scrapers log in on every request)
}

func newAuth(cfg Config, check func(hash, password string) error, secure bool) *auth {
	return &auth{cfg: cfg, check: check, secure: secure, sessions: map[string]*session{},
		failing: guard.NewFailures(maxFailingAddrs), basicOK: map[string][32]byte{}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// current returns the request's session, nil if it has none (or one that
// ended).
func (a *auth) current(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[c.Value]
	if s == nil {
		return nil
	}
	if time.Since(s.created) > sessionLifetime {
		delete(a.sessions, s.id)
		return nil
	}
	if a.cfg.NeedsLogin() && s.user == "" {
		return nil
	}
	return s
}

// start begins a session for user and sets its cookie.
func (a *auth) start(w http.ResponseWriter, user string) *session {
	s := &session{id: randomHex(32), user: user, token: randomHex(32), created: time.Now()}
	a.mu.Lock()
	if len(a.sessions) >= maxSessions {
		var oldest *session
		for _, x := range a.sessions {
			if oldest == nil || x.created.Before(oldest.created) {
				oldest = x
			}
		}
		delete(a.sessions, oldest.id)
	}
	a.sessions[s.id] = s
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.id, Path: "/", HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionLifetime / time.Second)})
	return s
}

func (a *auth) end(w http.ResponseWriter, s *session) {
	a.mu.Lock()
	delete(a.sessions, s.id)
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// login checks a user's password. Unknown users cost a bcrypt too, so the
// answer's timing does not tell which names exist.
func (a *auth) login(user, password string) bool {
	hash, known := a.cfg.Users[user]
	if !known {
		hash = dummyHash
	}
	return a.check(hash, password) == nil && known
}

// dummyHash is a bcrypt hash no password matches in practice; checked for
// unknown users.
const dummyHash = "$2a$10$ACOrOqH33id2arBuniEXOuESJ7vcbnJmbEwyho4e/Al.CzSl.yoqy"

// basic checks HTTP basic credentials (for /metrics scrapers), caching
// the last good password per user so a scrape does not cost a bcrypt.
func (a *auth) basic(r *http.Request) bool {
	user, password, ok := r.BasicAuth()
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(password))
	a.mu.Lock()
	cached, hit := a.basicOK[user]
	a.mu.Unlock()
	if hit && subtle.ConstantTimeCompare(cached[:], sum[:]) == 1 {
		return true
	}
	if !a.login(user, password) {
		return false
	}
	a.mu.Lock()
	a.basicOK[user] = sum
	a.mu.Unlock()
	return true
}

// failed counts a failed login from the request's address and returns
// how long to wait before answering it.
func (a *auth) failed(r *http.Request) time.Duration {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return guard.Delay(a.failing.Fail(host), failureDelay, maxFailureDelay)
}

// tokenOK tells whether a POST carries its session's token and, when the
// browser says where it comes from, comes from this page.
func tokenOK(r *http.Request, s *session) bool {
	if s == nil {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	if r.PostForm == nil {
		if err := r.ParseForm(); err != nil {
			return false
		}
	}
	got := r.PostForm.Get("token")
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}
