package status

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgesink/edgesink/forward"
	"github.com/edgesink/edgesink/sink"
)

// Metrics are edgesink's counters, written in the Prometheus text format
// (version 0.0.4) by hand: a dozen series need no library (measured in
// README: a metrics library costs the ARMv6 binary more than this whole
// page). Label values come from closed sets only: reply classes, event
// types of the vocabulary, output names from the config.
type Metrics struct {
	connsOpen    atomic.Int64
	tlsSessions  atomic.Uint64
	smtpAuthFail atomic.Uint64
	httpAuthFail atomic.Uint64
	replies      [6]atomic.Uint64 // by reply class: index 2 = 2xx … 5 = 5xx

	mu         sync.Mutex
	alerts     map[string]uint64            // by event type
	deliveries map[string]map[string]uint64 // output -> outcome -> count
	latency    map[string]*histogram        // by output
}

func newMetrics() *Metrics {
	return &Metrics{alerts: map[string]uint64{}, deliveries: map[string]map[string]uint64{}, latency: map[string]*histogram{}}
}

// The smtpd.Observer methods.

// ConnectionOpened counts an SMTP connection.
func (m *Metrics) ConnectionOpened() { m.connsOpen.Add(1) }

// ConnectionClosed counts an SMTP connection gone.
func (m *Metrics) ConnectionClosed() { m.connsOpen.Add(-1) }

// TLSStarted counts a session that turned to TLS.
func (m *Metrics) TLSStarted() { m.tlsSessions.Add(1) }

// AuthFailed counts a failed SMTP login.
func (m *Metrics) AuthFailed() { m.smtpAuthFail.Add(1) }

// Replied counts the reply to a mail by its class.
func (m *Metrics) Replied(code int) {
	if c := code / 100; c >= 2 && c <= 5 {
		m.replies[c].Add(1)
	}
}

// labelWord tells whether an event type may become a label value as it
// is: the vocabulary is closed (sink.Event); this keeps it so whatever a
// template says.
func labelWord(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// maxEventTypes bounds the event-type label's values.
const maxEventTypes = 64

func eventLabel(e *sink.Event) string {
	if e == nil {
		return "none"
	}
	if !labelWord(e.Type) {
		return "other"
	}
	return e.Type
}

func (m *Metrics) alert(eventType string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.alerts[eventType]; !ok && len(m.alerts) >= maxEventTypes {
		eventType = "other"
	}
	m.alerts[eventType]++
}

// Delivery outcomes.
const (
	outcomeDelivered = "delivered"
	outcomeFailed    = "failed" // an attempt failed (it is retried)
	outcomeDead      = "dead"   // the output gave up: a dead letter
)

func (m *Metrics) delivery(output string, err error, took time.Duration) {
	outcome := outcomeDelivered
	if err != nil {
		outcome = outcomeFailed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.countLocked(output, outcome)
	if err == nil {
		h := m.latency[output]
		if h == nil {
			h = &histogram{}
			m.latency[output] = h
		}
		h.observe(took.Seconds())
	}
}

func (m *Metrics) dead(output string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.countLocked(output, outcomeDead)
}

func (m *Metrics) countLocked(output, outcome string) {
	byOutcome := m.deliveries[output]
	if byOutcome == nil {
		byOutcome = map[string]uint64{}
		m.deliveries[output] = byOutcome
	}
	byOutcome[outcome]++
}

// latencyBuckets are the delivery-latency histogram's upper bounds, in
// seconds: a LAN broker answers in milliseconds, a retry takes seconds.
var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

type histogram struct {
	counts [14]uint64 // per bucket, the last is +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(latencyBuckets, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

// gauges is what the exposition reads from the rest of edgesink at scrape
// time.
type gauges struct {
	queued, queueBytes, dead int
	oldestAge                float64
	outputsUp                map[string]bool
	brokerClients            int // -1: no embedded broker
	uptime                   float64
	version                  string
}

// write writes every series in the Prometheus text format.
func (m *Metrics) write(w io.Writer, g gauges) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	help := func(name, typ, text string) { p("# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ) }

	help("edgesink_mails_received_total", "counter", "Mails whose DATA was answered, by reply class.")
	for _, c := range []int{2, 4, 5} {
		p("edgesink_mails_received_total{code_class=\"%dxx\"} %d\n", c, m.replies[c].Load())
	}
	help("edgesink_smtp_connections_open", "gauge", "SMTP connections open now.")
	p("edgesink_smtp_connections_open %d\n", m.connsOpen.Load())
	help("edgesink_tls_handshakes_total", "counter", "SMTP sessions that turned to TLS (STARTTLS or implicit TLS).")
	p("edgesink_tls_handshakes_total %d\n", m.tlsSessions.Load())
	help("edgesink_auth_failures_total", "counter", "Failed logins, by service.")
	p("edgesink_auth_failures_total{service=\"smtp\"} %d\n", m.smtpAuthFail.Load())
	p("edgesink_auth_failures_total{service=\"http\"} %d\n", m.httpAuthFail.Load())

	m.mu.Lock()
	help("edgesink_alerts_total", "counter", "Alerts accepted, by event type.")
	for _, t := range sortedKeys(m.alerts) {
		p("edgesink_alerts_total{event_type=%q} %d\n", t, m.alerts[t])
	}
	help("edgesink_deliveries_total", "counter", "Delivery attempts, by output and outcome (delivered, failed, dead).")
	for _, o := range sortedKeys(m.deliveries) {
		for _, oc := range []string{outcomeDelivered, outcomeFailed, outcomeDead} {
			p("edgesink_deliveries_total{output=%q,outcome=%q} %d\n", o, oc, m.deliveries[o][oc])
		}
	}
	help("edgesink_delivery_duration_seconds", "histogram", "Time from handing an alert to an output to its confirmation.")
	for _, o := range sortedKeys(m.latency) {
		h := m.latency[o]
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i]
			p("edgesink_delivery_duration_seconds_bucket{output=%q,le=\"%g\"} %d\n", o, le, cum)
		}
		p("edgesink_delivery_duration_seconds_bucket{output=%q,le=\"+Inf\"} %d\n", o, h.n)
		p("edgesink_delivery_duration_seconds_sum{output=%q} %g\n", o, h.sum)
		p("edgesink_delivery_duration_seconds_count{output=%q} %d\n", o, h.n)
	}
	m.mu.Unlock()

	help("edgesink_queue_alerts", "gauge", "Alerts queued, not yet delivered by every output.")
	p("edgesink_queue_alerts %d\n", g.queued)
	help("edgesink_queue_bytes", "gauge", "Bytes the queued alerts take.")
	p("edgesink_queue_bytes %d\n", g.queueBytes)
	help("edgesink_queue_oldest_age_seconds", "gauge", "Age of the oldest queued alert (0 when empty).")
	p("edgesink_queue_oldest_age_seconds %g\n", g.oldestAge)
	help("edgesink_dead_letters", "gauge", "Dead letters held.")
	p("edgesink_dead_letters %d\n", g.dead)
	help("edgesink_output_up", "gauge", "1 when the output is connected (or has no connection to lose).")
	for _, o := range sortedKeys(g.outputsUp) {
		up := 0
		if g.outputsUp[o] {
			up = 1
		}
		p("edgesink_output_up{output=%q} %d\n", o, up)
	}
	if g.brokerClients >= 0 {
		help("edgesink_broker_clients", "gauge", "Clients connected to the embedded MQTT broker.")
		p("edgesink_broker_clients %d\n", g.brokerClients)
	}
	help("edgesink_uptime_seconds", "gauge", "Seconds since edgesink started.")
	p("edgesink_uptime_seconds %g\n", g.uptime)
	help("edgesink_build_info", "gauge", "The running version.")
	p("edgesink_build_info{version=%q} 1\n", g.version)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// outputUp tells whether an output counts as up: its connection when it
// has one (forward.Stater), else whether its deliveries go through.
func (s *Server) outputUp(o Output) (up bool, since time.Time, lastErr string) {
	if st, ok := o.(forward.Stater); ok {
		state := st.State()
		return state.Up, state.Since, state.LastError
	}
	failing, err := s.d.Recorder.failing(o.Name())
	if !failing.IsZero() {
		return false, failing, err
	}
	return true, time.Time{}, err
}
