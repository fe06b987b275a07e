package status

import (
	"net/http"
	"sync"
)

// hub tells the open pages that something changed, over Server-Sent
// Events. It runs no timer and no goroutine of its own: a stream's handler
// sleeps on its channel until a change (or its end), so with no page open
// nothing runs at all. At most max streams are open at once.
type hub struct {
	slots chan struct{}

	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	closed chan struct{}
	once   sync.Once
}

func newHub(max int) *hub {
	return &hub{slots: make(chan struct{}, max), subs: map[chan struct{}]struct{}{}, closed: make(chan struct{})}
}

// notify wakes every stream; a stream that has not sent the last change
// yet sends one for both.
func (h *hub) notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (h *hub) close() { h.once.Do(func() { close(h.closed) }) }

// serve is one stream: an event "change" each time something changed; the
// page then fetches what it shows again (/live).
func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many live pages open", http.StatusServiceUnavailable)
		return
	}
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	// retry: how long a browser waits before reconnecting a dropped stream.
	if _, err := w.Write([]byte("retry: 3000\n\n")); err != nil {
		return
	}
	flusher.Flush()
	for {
		select {
		case <-c:
			if _, err := w.Write([]byte("event: change\ndata: 1\n\n")); err != nil {
				return
			}
			flusher.Flush()
		case <-r.Context().Done():
			return
		case <-h.closed:
			return
		}
	}
}
