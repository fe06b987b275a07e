package smtpd

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"github.com/edgesink/edgesink/sink/config"
)

// Policy says who may send to the sink. edgesink never relays: a recipient
// is only ever a label on an alert, yet a sink that accepts any sender from
// anywhere is an open door on the LAN, so the defaults are narrow.
type Policy struct {
	// Networks clients may connect from; others are answered 554 5.7.1 at
	// once. Empty means DefaultNetworks.
	Networks []netip.Prefix `yaml:"allow_networks"`
	// Senders allowed in MAIL FROM: "cam@cams.lan", or "@cams.lan" /
	// "cams.lan" for a whole domain. Empty allows any (the null sender too).
	Senders []string `yaml:"allow_senders"`
	// Recipients allowed in RCPT TO, in the same forms. Empty allows any.
	Recipients []string `yaml:"allow_recipients"`
	// MaxConnectionsPerIP bounds one client address's open connections
	// (beyond: 421 4.7.0). MailsPerMinute bounds the mails one address may
	// start a minute, with bursts of as many (beyond: 450 4.7.1, retry later).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	MailsPerMinute      int `yaml:"max_mails_per_minute"`
}

// DefaultNetworks are loopback, private (RFC 1918, RFC 4193) and link-local
// ranges: the LAN, not the internet.
var DefaultNetworks = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// Policy defaults.
const (
	DefaultMaxConnectionsPerIP = 8
	DefaultMailsPerMinute      = 900
)

func (p Policy) withDefaults() Policy {
	if len(p.Networks) == 0 {
		p.Networks = slices.Clone(DefaultNetworks)
	}
	if p.Senders == nil {
		p.Senders = []string{}
	}
	if p.Recipients == nil {
		p.Recipients = []string{}
	}
	orDefault(&p.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	orDefault(&p.MailsPerMinute, DefaultMailsPerMinute)
	return p
}

// Validate reports an entry that can never match.
func (p Policy) Validate() error {
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow_senders", p.Senders}, {"allow_recipients", p.Recipients}} {
		for _, a := range l.list {
			if a == "" || strings.ContainsAny(a, " \t<>") || strings.Count(a, "@") > 1 {
				return config.Bad(l.key, "%q: want an address (user@domain) or a domain (@domain or domain)", a)
			}
		}
	}
	if p.MaxConnectionsPerIP < 0 {
		return config.Bad("max_connections_per_ip", "must be positive")
	}
	if p.MailsPerMinute < 0 {
		return config.Bad("max_mails_per_minute", "must be positive")
	}
	return nil
}

// allowsNetwork reports whether a client at addr may connect.
func (p Policy) allowsNetwork(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range p.Networks {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// allowsAddress reports whether address matches list (empty allows all):
// an entry is a whole address or, with or without a leading "@", a domain.
// Comparison ignores case.
func allowsAddress(list []string, address string) bool {
	if len(list) == 0 {
		return true
	}
	address = strings.ToLower(address)
	domain := ""
	if i := strings.LastIndexByte(address, '@'); i >= 0 {
		domain = address[i+1:]
	}
	for _, e := range list {
		e = strings.ToLower(e)
		switch {
		case strings.Contains(e, "@") && !strings.HasPrefix(e, "@"):
			if e == address {
				return true
			}
		case domain != "" && strings.TrimPrefix(e, "@") == domain:
			return true
		}
	}
	return false
}

// Replies for what the policy refuses. 5xx: the device must not retry as
// is; 4xx: it may, later.
var (
	errSenderDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender not allowed here"}
	errRecipientDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Recipient not allowed here: this server relays nothing"}
	errRateLimited = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Too many mails from your address, try again later"}
)

// clients tracks each client address's open connections and mail rate.
type clients struct {
	perIP int
	rate  rate.Limit
	burst int

	mu   sync.Mutex
	byIP map[netip.Addr]*client
}

type client struct {
	conns   int
	limiter *rate.Limiter
}

func newClients(p Policy) *clients {
	return &clients{perIP: p.MaxConnectionsPerIP, rate: rate.Limit(float64(p.MailsPerMinute) / 60),
		burst: p.MailsPerMinute, byIP: make(map[netip.Addr]*client)}
}

// get returns addr's record, creating it; callers hold mu.
func (cs *clients) get(addr netip.Addr) *client {
	c := cs.byIP[addr]
	if c == nil {
		c = &client{limiter: rate.NewLimiter(cs.rate, cs.burst)}
		cs.byIP[addr] = c
	}
	return c
}

// open counts a new connection from addr; false when addr is at its cap.
func (cs *clients) open(addr netip.Addr) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.get(addr)
	if c.conns >= cs.perIP {
		return false
	}
	c.conns++
	return true
}

// closed undoes open. Records of addresses with no connection and a full
// bucket are dropped here, so the table only holds active clients.
func (cs *clients) closed(addr netip.Addr) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c := cs.byIP[addr]; c != nil {
		c.conns--
	}
	for a, c := range cs.byIP {
		if c.conns <= 0 && c.limiter.Tokens() >= float64(cs.burst) {
			delete(cs.byIP, a)
		}
	}
}

// allowMail takes one mail from addr's bucket.
func (cs *clients) allowMail(addr netip.Addr) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.get(addr).limiter.Allow()
}

// remoteAddr is the client's IP address, or the zero Addr for a non-IP
// connection (which policies then treat as foreign).
func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}
