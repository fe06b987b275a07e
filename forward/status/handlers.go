package status

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgesink/edgesink/forward/spool"
)

// files are the page's script and style sheet.
//
//go:embed static
var files embed.FS

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	staticFiles := http.FileServerFS(static)
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, staticFiles)))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /metrics", s.metricsPage)
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.loginPost)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /live", s.page)
	mux.HandleFunc("GET /events", s.withSession(s.hub.serve))
	mux.HandleFunc("GET /raw/{file}", s.withSession(s.rawMail))
	mux.HandleFunc("GET /snapshot/{file}", s.withSession(s.snapshot))
	mux.HandleFunc("POST /dead/{id}/{action}", s.deadAction)
	return mux
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d", int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// withSession lets a request through only with a session (a login when
// one is needed).
func (s *Server) withSession(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth.current(r) == nil {
			http.Error(w, "log in first: /login", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// View is what the page shows.
type View struct {
	Info       Info
	Uptime     string
	Started    time.Time
	Devices    []DeviceInfo
	Alerts     []AlertRow
	Queue      *QueueView
	Outputs    []OutputView
	Token      string
	User       string
	Login      bool // a login is in force: show "log out"
	Broker     int  // clients of the embedded broker; -1: none
	Now        time.Time
	RawRing    int
	ReadyGrace time.Duration
}

// QueueView is the queue and its dead letters.
type QueueView struct {
	Stats    spool.Stats
	OldestAt string
	Dead     []DeadView
	Err      string
}

// DeadView is one dead letter.
type DeadView struct {
	ID, Device, Subject, Output, Reason string
	At                                  time.Time
	Attempts                            int
	HasRaw                              bool
}

// OutputView is one output.
type OutputView struct {
	Name      string
	Up        bool
	Since     time.Time
	LastError string
	Detail    string
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	sess := s.auth.current(r)
	if sess == nil {
		if s.cfg.NeedsLogin() {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		sess = s.auth.start(w, "")
	}
	v := s.view(sess)
	var p page
	if r.URL.Path == "/live" {
		renderMain(&p, v)
	} else {
		renderPage(&p, v)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(p.b.Bytes())
}

func (s *Server) view(sess *session) View {
	v := View{Info: s.d.Info, Started: s.started, Uptime: time.Since(s.started).Round(time.Second).String(),
		Devices: s.devices(), Alerts: s.d.Recorder.recentAlerts(), Token: sess.token, User: sess.user,
		Login: s.cfg.NeedsLogin(), Broker: -1, Now: time.Now(), RawRing: s.cfg.RawRing, ReadyGrace: s.cfg.ReadyGrace}
	if s.d.Broker != nil {
		v.Broker = s.d.Broker.Clients()
	}
	if q := s.d.Queue; q != nil {
		qv := &QueueView{Stats: q.Stats()}
		if !qv.Stats.Oldest.IsZero() {
			qv.OldestAt = ago(qv.Stats.Oldest)
		}
		dead, err := q.Dead()
		if err != nil {
			qv.Err = err.Error()
		}
		for i := len(dead) - 1; i >= 0; i-- { // newest first
			d := dead[i]
			qv.Dead = append(qv.Dead, DeadView{ID: d.Alert.ID, Device: d.Alert.Device, Subject: d.Alert.Subject,
				Output: d.Output, Reason: d.Reason, At: d.At, Attempts: d.Attempts, HasRaw: s.d.Recorder.raw.has(d.Alert.ID)})
		}
		v.Queue = qv
	}
	for _, o := range s.d.Outputs {
		up, since, lastErr := s.outputUp(o)
		ov := OutputView{Name: o.Name(), Up: up, Since: since, LastError: lastErr}
		if p, ok := o.(interface{ IsOpen() bool }); ok {
			ov.Detail = "closed (opened on the next alert)"
			if p.IsOpen() {
				ov.Detail = "open"
			}
		}
		v.Outputs = append(v.Outputs, ov)
	}
	return v
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.NeedsLogin() {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.loginPage(w, http.StatusOK, "")
}

func (s *Server) loginPage(w http.ResponseWriter, code int, msg string) {
	var p page
	renderLogin(&p, msg)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(p.b.Bytes())
}

func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.NeedsLogin() {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	user, password := formValue(w, r, "user"), formValue(w, r, "password")
	if user == "" || !s.auth.login(user, password) {
		s.d.Recorder.metrics.httpAuthFail.Add(1)
		wait := s.auth.failed(r)
		s.log.Warn("status page: login failed", "remote_addr", r.RemoteAddr, "user", user, "wait", wait)
		s.sleep(r.Context(), wait)
		s.loginPage(w, http.StatusUnauthorized, "Wrong user name or password.")
		return
	}
	s.auth.start(w, user)
	s.log.Info("status page: logged in", "remote_addr", r.RemoteAddr, "user", user)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	sess := s.auth.current(r)
	if !tokenOK(r, sess) {
		http.Error(w, "missing or wrong token", http.StatusForbidden)
		return
	}
	s.auth.end(w, sess)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// rawMail sends a raw mail as an .eml attachment, byte for byte as the
// device sent it.
func (s *Server) rawMail(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".eml")
	if !ok || !spool.ValidID(id) {
		http.NotFound(w, r)
		return
	}
	data, ok := s.d.Recorder.Raw(id)
	if !ok {
		http.Error(w, "the raw mail of "+id+" is not kept", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "message/rfc822")
	h.Set("Content-Disposition", `attachment; filename="`+id+`.eml"`)
	h.Set("Content-Length", fmt.Sprint(len(data)))
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(data)
}

// deadAction retries, drops or replays a dead letter.
func (s *Server) deadAction(w http.ResponseWriter, r *http.Request) {
	sess := s.auth.current(r)
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if sess == nil {
		http.Error(w, "log in first: /login", http.StatusUnauthorized)
		return
	}
	if !tokenOK(r, sess) {
		http.Error(w, "missing or wrong token", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	if !spool.ValidID(id) || s.d.Queue == nil {
		http.NotFound(w, r)
		return
	}
	var err error
	action := r.PathValue("action")
	switch action {
	case "retry":
		if err = s.d.Queue.RetryDead(r.Context(), id); err == nil {
			s.d.Recorder.raw.requeued(id)
		}
	case "drop":
		if err = s.d.Queue.DropDead(id); err == nil {
			s.d.Recorder.raw.forget(id)
		}
	case "replay":
		err = s.replay(r, id)
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.log.Warn("status page: dead letter "+action+" failed", "id", id, "err", err)
		code := http.StatusInternalServerError
		if errors.Is(err, spool.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = http.StatusNotFound
		}
		http.Error(w, action+" "+id+": "+err.Error(), code)
		return
	}
	s.log.Info("status page: dead letter "+action, "id", id, "user", sess.user)
	s.hub.notify()
	http.Redirect(w, r, "/#queue", http.StatusSeeOther)
}

// replay runs a dead letter's raw mail through the pipeline again.
func (s *Server) replay(r *http.Request, id string) error {
	if s.d.Replay == nil {
		return errors.New("replay is not available")
	}
	raw, ok := s.d.Recorder.Raw(id)
	if !ok {
		return fmt.Errorf("%w: the raw mail of %s is not kept", spool.ErrNotFound, id)
	}
	orig, ok := s.d.Recorder.Alert(id)
	if !ok {
		dead, err := s.d.Queue.Dead()
		if err != nil {
			return err
		}
		for _, d := range dead {
			if d.Alert.ID == id {
				orig, ok = d.Alert, true
			}
		}
	}
	if !ok {
		return fmt.Errorf("%w: dead letter %s", spool.ErrNotFound, id)
	}
	a, err := s.d.Replay(r.Context(), raw, orig)
	if err != nil {
		return err
	}
	s.log.Info("status page: replayed dead letter", "id", id, "new_id", a.ID)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// readyz: SMTP listening, the spool writable, every output connected or
// down for less than ready_grace.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if s.d.SMTPListening != nil && !s.d.SMTPListening() {
		reasons = append(reasons, "smtp: not listening")
	}
	if q := s.d.Queue; q != nil && q.Dir() != "" {
		if err := syscall.Access(filepath.Join(q.Dir(), "queue"), 2 /* W_OK */); err != nil {
			reasons = append(reasons, "spool: not writable: "+err.Error())
		}
	}
	for _, o := range s.d.Outputs {
		up, since, lastErr := s.outputUp(o)
		if !up && time.Since(since) >= s.cfg.ReadyGrace {
			reason := fmt.Sprintf("%s: down for %s", o.Name(), time.Since(since).Round(time.Second))
			if lastErr != "" {
				reason += ": " + lastErr
			}
			reasons = append(reasons, reason)
		}
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// metricsPage writes /metrics. Beyond loopback it takes the page's users
// with HTTP basic auth (what Prometheus' basic_auth sends), or a session.
func (s *Server) metricsPage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.NeedsLogin() && s.auth.current(r) == nil && !s.auth.basic(r) {
		s.d.Recorder.metrics.httpAuthFail.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="edgesink metrics"`)
		http.Error(w, "log in", http.StatusUnauthorized)
		return
	}
	g := gauges{uptime: time.Since(s.started).Seconds(), version: s.d.Info.Version, brokerClients: -1,
		outputsUp: map[string]bool{}}
	if q := s.d.Queue; q != nil {
		st := q.Stats()
		g.queued, g.queueBytes, g.dead = st.Queued, int(st.Bytes), st.Dead
		if !st.Oldest.IsZero() {
			g.oldestAge = time.Since(st.Oldest).Seconds()
		}
	}
	for _, o := range s.d.Outputs {
		up, _, _ := s.outputUp(o)
		g.outputsUp[o.Name()] = up
	}
	if s.d.Broker != nil {
		g.brokerClients = s.d.Broker.Clients()
	}
	var buf bytes.Buffer
	s.d.Recorder.metrics.write(&buf, g)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// ago is a short relative time: "12s ago", "3m ago", "2h ago", "4d ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// when is a local time: the clock today, the date otherwise.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	l := t.Local()
	if l.Format(time.DateOnly) == time.Now().Local().Format(time.DateOnly) {
		return l.Format(time.TimeOnly)
	}
	return l.Format(time.DateTime)
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// formValue reads a field of a urlencoded POST form (the only kind the page
// sends), its body bounded.
func formValue(w http.ResponseWriter, r *http.Request, key string) string {
	if r.PostForm == nil {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		if err := r.ParseForm(); err != nil {
			return ""
		}
	}
	return r.PostForm.Get(key)
}

// devices is the device list, each with its snapshot's URL when one is
// kept.
func (s *Server) devices() []DeviceInfo {
	list := s.d.Devices.Devices()
	if s.d.Snapshots == nil {
		return list
	}
	for i, d := range list {
		if d.Snapshot == "" && s.d.Snapshots.HasSnapshot(d.Name) {
			list[i].Snapshot = "/snapshot/" + url.PathEscape(d.Name) + ".jpg"
		}
	}
	return list
}

// snapshot serves a device's latest snapshot.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	device, ok := strings.CutSuffix(r.PathValue("file"), ".jpg")
	if !ok || s.d.Snapshots == nil {
		http.NotFound(w, r)
		return
	}
	jpeg, ok := s.d.Snapshots.Snapshot(device)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(jpeg)
}
