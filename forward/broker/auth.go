package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"github.com/edgesink/edgesink/forward/guard"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Roles of the embedded broker's users (Config.Users).
const (
	// RoleReader subscribes to edgesink's topics and publishes nothing.
	RoleReader = "reader"
	// RoleHomeAssistant is a reader that may also publish Home Assistant's
	// birth message ({prefix}/status) and empty retained payloads under
	// the discovery prefix, which is how Home Assistant deletes a device.
	RoleHomeAssistant = "homeassistant"
)

// PublisherUser is the user name edgesink's own MQTT output logs in with;
// its password is generated at first start (cmd keeps it in the state
// directory). No configured user may take this name.
const PublisherUser = "edgesink"

// DefaultDiscoveryPrefix is Home Assistant's MQTT discovery prefix
// (TOPICS.md). A constant until the Home Assistant output makes it a
// setting; the topic rights follow Topics.DiscoveryPrefix either way.
const DefaultDiscoveryPrefix = "homeassistant"

// Failed logins are answered after a delay that grows with each failure
// from the same address: failureDelay times the failures, at most
// maxFailureDelay. An address is forgotten guard.Memory after its last
// failure, or at its next successful login.
const (
	failureDelay    = time.Second
	maxFailureDelay = 10 * time.Second
	maxFailingAddrs = 4096 // beyond this the table starts afresh
)

// dummyHash is checked for unknown users, so a wrong user name costs as
// much to refuse as a wrong password. A constant (the same one sink/smtpd
// uses): computing one at start costs a Pi Zero about a second. Nothing
// logs in with it.
var dummyHash = []byte("$2a$10$t8L/udNKJMUlhY1ENvyR.ufkE/uTjou6kQXpbY5usGj5qFBKOV1C.")

// User is one login of the embedded broker.
type User struct {
	Password string `yaml:"password"` // bcrypt hash ('edgesink hash-password')
	Role     string `yaml:"role"`     // RoleReader or RoleHomeAssistant
}

// Topics are the names on the wire the topic rights are derived from
// (TOPICS.md), defaults already filled in by the MQTT output's config.
type Topics struct {
	Base            string // {base}: every topic edgesink publishes below it by default
	Alert           string // the alert topic template, e.g. edgesink/{device}/alert
	Status          string // the status (availability) topic, "" when off
	DiscoveryPrefix string // Home Assistant's discovery prefix; "" means DefaultDiscoveryPrefix
}

// filters are the topic filters covering every topic edgesink publishes
// on: the base topic's tree, the alert template with each placeholder a
// single level, the status topic and the discovery prefix's tree.
func (t Topics) filters() []string {
	var out []string
	if t.Base != "" {
		out = append(out, t.Base+"/#")
	}
	if t.Alert != "" {
		levels := strings.Split(t.Alert, "/")
		for i, l := range levels {
			if strings.Contains(l, "{") { // a placeholder: one level (the output replaces '/')
				levels[i] = "+"
			}
		}
		out = append(out, strings.Join(levels, "/"))
	}
	if t.Status != "" {
		out = append(out, t.Status)
	}
	return append(out, t.prefix()+"/#")
}

func (t Topics) prefix() string {
	if t.DiscoveryPrefix == "" {
		return DefaultDiscoveryPrefix
	}
	return t.DiscoveryPrefix
}

// covers tells whether every topic matched by filter sub is matched by
// filter f (both MQTT filters; a topic name is a filter without wildcards).
func covers(f, sub string) bool {
	fl, sl := strings.Split(f, "/"), strings.Split(sub, "/")
	for i, l := range fl {
		if l == "#" {
			return true
		}
		if i >= len(sl) {
			return false
		}
		switch {
		case sl[i] == "#":
			return false
		case l == "+":
		case l != sl[i]:
			return false
		}
	}
	if len(sl) == len(fl) {
		return true
	}
	return false
}

func coveredByAny(filters []string, sub string) bool {
	for _, f := range filters {
		if covers(f, sub) {
			return true
		}
	}
	return false
}

// client kinds, as the hook sees them.
type kind int

const (
	kindNone      kind = iota // not allowed in: no rights
	kindOpen                  // anonymous on a broker without users: every right, as before users existed
	kindPublisher             // edgesink's own output
	kindReader
	kindHomeAssistant
)

// authHook is the broker's login and topic-rights check, plugged into
// mochi-mqtt's hook chain (OnConnectAuthenticate, OnACLCheck and, for the
// payload rule on discovery topics, OnPublish).
type authHook struct {
	mochi.HookBase
	cfg     Config
	read    []string // filters any logged-in client may read
	srv     *mochi.Server
	ctx     context.Context // ends at Close: no guesser is kept waiting then
	log     *slog.Logger
	checkMu sync.Mutex // one password check at a time: bcrypt must not pin every core

	failing *guard.Failures // by remote address (no port)
}

func (h *authHook) ID() string { return "edgesink-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish}, []byte{b})
}

// kindOf is what the (already authenticated) client may do, by the user
// name it logged in with.
func (h *authHook) kindOf(cl *mochi.Client) kind {
	user := string(cl.Properties.Username)
	switch {
	case user != PublisherUser && len(h.cfg.Users) == 0:
		return kindOpen // any login, as before users existed
	case user == "" && h.cfg.AllowAnonymous:
		return kindReader
	case user == "":
		return kindNone
	case user == PublisherUser:
		return kindPublisher
	}
	u, ok := h.cfg.Users[user]
	switch {
	case !ok:
		return kindNone
	case u.Role == RoleHomeAssistant:
		return kindHomeAssistant
	default:
		return kindReader
	}
}

// OnConnectAuthenticate checks the login. A failure is answered after a
// delay growing with the failures from that address.
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	addr := remoteHost(cl.Net.Remote)
	user, pass := string(pk.Connect.Username), pk.Connect.Password
	reason := h.authenticate(cl, user, pass)
	if reason == "" {
		// A client may not bring a will it could not publish itself:
		// mochi-mqtt publishes wills without asking OnACLCheck.
		if pk.Connect.WillFlag && !h.may(h.kindOf(cl), pk.Connect.WillTopic, pk.Connect.WillPayload) {
			reason = "will on a topic this user may not publish to: " + pk.Connect.WillTopic
		}
	}
	if reason == "" {
		h.failing.Forget(addr)
		if user != "" && user != PublisherUser {
			h.log.Info("MQTT client logged in", "remote_addr", cl.Net.Remote, "user", user, "client_id", cl.ID)
		}
		return true
	}
	n := h.failing.Fail(addr)
	h.log.Warn("MQTT login refused", "remote_addr", cl.Net.Remote, "user", user, "client_id", cl.ID,
		"reason", reason, "failures", n)
	h.cfg.Sleep(h.ctx, failureWait(n))
	return false
}

// authenticate returns why user may not log in, "" if it may. The
// password is never logged.
func (h *authHook) authenticate(cl *mochi.Client, user string, pass []byte) string {
	if user != PublisherUser && h.cfg.PublisherClientID != "" && cl.ID == h.cfg.PublisherClientID {
		// Taking over the output's client id would disconnect it.
		return "client id of edgesink's own output"
	}
	switch {
	case user != PublisherUser && len(h.cfg.Users) == 0:
		// The open broker: clients that log in anyway (a Home Assistant
		// set up against an earlier release) are let in, as then.
		return ""
	case user == "":
		if !h.cfg.AllowAnonymous {
			return "no login (this broker has users)"
		}
		return ""
	case user == PublisherUser:
		if h.cfg.PublisherPassword == "" || subtle.ConstantTimeCompare(pass, []byte(h.cfg.PublisherPassword)) != 1 {
			return "wrong password"
		}
		return ""
	}
	u, known := h.cfg.Users[user]
	hash := []byte(u.Password)
	if !known {
		hash = dummyHash
	}
	h.checkMu.Lock()
	err := h.cfg.CheckPassword(hash, pass)
	h.checkMu.Unlock()
	switch {
	case !known:
		return "unknown user"
	case err != nil:
		return "wrong password"
	}
	return ""
}

// failureWait is the delay before refusing the n-th failed login from one
// address.
func failureWait(n int) time.Duration { return guard.Delay(n, failureDelay, maxFailureDelay) }

// OnACLCheck says whether the client may subscribe to (write false) or
// publish on (write true) topic. Payload rules come in OnPublish.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	k := h.kindOf(cl)
	switch k {
	case kindNone:
		return false
	case kindOpen:
		return true
	}
	if !write {
		return coveredByAny(h.read, topic)
	}
	switch k {
	case kindPublisher:
		return coveredByAny(h.read, topic)
	case kindHomeAssistant:
		return covers(h.cfg.Topics.prefix()+"/#", topic)
	}
	return false
}

// may tells whether a client of kind k may publish payload on topic.
func (h *authHook) may(k kind, topic string, payload []byte) bool {
	switch k {
	case kindOpen:
		return true
	case kindPublisher:
		return coveredByAny(h.read, topic)
	case kindHomeAssistant:
		p := h.cfg.Topics.prefix()
		return topic == p+"/status" || (len(payload) == 0 && covers(p+"/#", topic))
	}
	return false
}

// OnPublish refuses what OnACLCheck cannot see: a homeassistant user's
// non-empty payload under the discovery prefix (only its birth message,
// {prefix}/status, may carry one). As for a topic OnACLCheck refuses, a
// refused QoS 0 message is dropped, an MQTT 5 client gets "not
// authorized", an older client at QoS 1 or 2 is disconnected.
func (h *authHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	k := h.kindOf(cl)
	if k != kindHomeAssistant || h.may(k, pk.TopicName, pk.Payload) {
		return pk, nil
	}
	h.log.Warn("MQTT publish refused", "remote_addr", cl.Net.Remote, "user", string(cl.Properties.Username),
		"topic", pk.TopicName, "reason", "only empty payloads (deleting a device) under the discovery prefix")
	switch {
	case pk.FixedHeader.Qos == 0:
		return pk, packets.ErrRejectPacket
	case cl.Properties.ProtocolVersion == 5:
		return pk, packets.ErrNotAuthorized
	}
	_ = h.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	return pk, packets.ErrRejectPacket
}

func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// errNoCheck is returned by Start without a password checker.
var errNoCheck = errors.New("broker: users configured but no password checker (Config.CheckPassword)")
