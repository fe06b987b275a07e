package classify

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Config is the classification a user adds to the built-in templates: the
// devices map and their own templates (top-level keys devices and
// templates of the configuration file).
type Config struct {
	Devices   []Device       `yaml:"devices" json:"devices"`
	Templates []UserTemplate `yaml:"templates" json:"templates"`
}

// DefaultConfig is no devices map and no user templates.
func DefaultConfig() Config {
	return Config{Devices: []Device{}, Templates: []UserTemplate{}}
}

// Device is one entry of the devices map. It matches a mail when every key
// it gives matches (give one or more); the first entry that matches names
// the alert's device.
type Device struct {
	// Name is the device name alerts are filed under (MQTT topic level):
	// lower-case letters, digits, '.', '_' and '-', at most 64.
	Name string `yaml:"name" json:"name"`
	// DisplayName, if set, is carried in the alert for displays (Home
	// Assistant's device name).
	DisplayName string `yaml:"display_name" json:"display_name,omitempty"`
	// Template, if set, is the template tried first for this device, even
	// when its mail lacks what the template recognises the vendor by.
	Template string `yaml:"template" json:"template,omitempty"`

	// IP is the client's address or network (192.168.1.23, 192.168.1.0/24).
	IP netip.Prefix `yaml:"ip" json:"ip,omitzero"`
	// AuthUser is the SMTP login; Helo the name the client greeted with.
	AuthUser string `yaml:"auth_user" json:"auth_user,omitempty"`
	Helo     string `yaml:"helo" json:"helo,omitempty"`
	// Sender is the envelope sender, From the first From address: an
	// address (cam@cams.lan) or a domain (@cams.lan), any case.
	Sender string `yaml:"sender" json:"sender,omitempty"`
	From   string `yaml:"from" json:"from,omitempty"`
}

// UserTemplate is one entry of the config's templates: a Match, and what
// the event is when it matches. User templates are tried before the
// built-in ones, in their order.
type UserTemplate struct {
	Name   string `yaml:"name" json:"name"`
	Match  `yaml:",inline"`
	Type   string `yaml:"type" json:"type"`
	State  string `yaml:"state" json:"state"`
	Detail string `yaml:"detail" json:"detail,omitempty"`
}

// Classifier decides a mail's device and event. It is immutable: a reload
// builds a new one (Stage.Swap).
type Classifier struct {
	devices []Device
	user    []*template
	all     []*template // user, then built-in
	byName  map[string]*template
	index   func() *litIndex // every template's literals, on first use
}

// Builtin is the classifier with the built-in templates only.
func Builtin() *Classifier {
	c, err := Load(Config{})
	if err != nil {
		panic(err) // built-in data is tested
	}
	return c
}

// Load validates cfg and compiles it with the built-in templates. Errors
// are config.KeyErrors naming the key ("templates.2.subject").
func Load(cfg Config) (*Classifier, error) {
	c := &Classifier{byName: map[string]*template{}}
	for i, u := range cfg.Templates {
		key := fmt.Sprintf("templates.%d", i)
		t, err := spec{Name: u.Name, Match: u.Match, Rules: []Rule{{Type: u.Type, State: u.State, Detail: u.Detail}}}.compile(key, false)
		if err != nil {
			return nil, err
		}
		if len(t.match) == 0 {
			return nil, config.Bad(key, "template %q matches every mail: give sender, recipient, device, subject, body or text", u.Name)
		}
		if _, dup := c.byName[t.name]; dup {
			return nil, config.Bad(key+".name", "%q: two templates of that name", t.name)
		}
		c.user = append(c.user, t)
		c.byName[t.name] = t
	}
	c.all = append(c.all, c.user...)
	c.index = builtinIndex
	if user := c.user; len(user) > 0 {
		c.index = sync.OnceValue(func() *litIndex {
			x := builtinIndex().clone()
			for _, t := range user {
				x.number(t)
			}
			x.build()
			return x
		})
	}
	for _, t := range builtinTemplates() {
		c.all = append(c.all, t)
		if _, ok := c.byName[t.name]; !ok {
			c.byName[t.name] = t
		}
	}
	for i, d := range cfg.Devices {
		key := fmt.Sprintf("devices.%d", i)
		if d.Name == "" || sink.SafeName(d.Name) != d.Name {
			return nil, config.Bad(key+".name", "%q: want lower-case letters, digits, '.', '_' or '-' (e.g. %q)", d.Name, sink.SafeName(d.Name))
		}
		if !d.IP.IsValid() && d.AuthUser == "" && d.Helo == "" && d.Sender == "" && d.From == "" {
			return nil, config.Bad(key, "device %q matches nothing: give ip, auth_user, helo, sender or from", d.Name)
		}
		if d.Template != "" {
			if _, ok := c.byName[d.Template]; !ok {
				return nil, config.Bad(key+".template", "%q: no such template (built in: see 'edgesink classify --templates')", d.Template)
			}
		}
		d.DisplayName = cleanValue(d.DisplayName)
		c.devices = append(c.devices, d)
	}
	return c, nil
}

// Validate checks cfg as Load does.
func (cfg Config) Validate() error {
	_, err := Load(cfg)
	return err
}

// Apply names a's device by the devices map (the extraction's name stands
// when no entry matches) and sets a.Event.
func (c *Classifier) Apply(a *sink.Alert) {
	d := c.device(a)
	if d != nil {
		a.Device = d.Name
		a.DisplayName = d.DisplayName
	}
	a.Event = c.event(a, d)
}

// Event is the event a mail reports; never nil.
func (c *Classifier) Event(a *sink.Alert) *sink.Event { return c.event(a, c.device(a)) }

func (c *Classifier) event(a *sink.Alert, d *Device) *sink.Event {
	m := newMail(a, c.index())
	defer m.release()
	if d != nil {
		m.device = d.Name
	}
	for _, t := range c.user {
		if ev := t.event(m, true); ev != nil {
			return ev
		}
	}
	if d != nil && d.Template != "" {
		if ev := c.byName[d.Template].event(m, false); ev != nil {
			return ev
		}
	}
	for _, t := range c.all[len(c.user):] {
		if ev := t.event(m, true); ev != nil {
			return ev
		}
	}
	return &sink.Event{Type: TypeOther, State: StateNone, Template: TemplateNone}
}

// device is the first entry of the devices map that matches a, or nil.
func (c *Classifier) device(a *sink.Alert) *Device {
	if len(c.devices) == 0 {
		return nil
	}
	var ip netip.Addr
	if host, _, err := net.SplitHostPort(a.RemoteAddr); err == nil {
		ip, _ = netip.ParseAddr(host)
	} else {
		ip, _ = netip.ParseAddr(a.RemoteAddr)
	}
	ip = ip.Unmap()
	from := ""
	if len(a.From) > 0 {
		from = a.From[0]
	}
	for i := range c.devices {
		d := &c.devices[i]
		if d.IP.IsValid() && (!ip.IsValid() || !d.IP.Contains(ip)) {
			continue
		}
		if d.AuthUser != "" && !strings.EqualFold(d.AuthUser, a.AuthUser) {
			continue
		}
		if d.Helo != "" && !strings.EqualFold(d.Helo, a.Helo) {
			continue
		}
		if d.Sender != "" && !addressMatches(d.Sender, a.MailFrom) {
			continue
		}
		if d.From != "" && !addressMatches(d.From, from) {
			continue
		}
		return d
	}
	return nil
}

// addressMatches: want is an address or "@domain", compared in any case.
func addressMatches(want, addr string) bool {
	addr = strings.Trim(addr, "<> ")
	if strings.HasPrefix(want, "@") {
		return addr != "" && strings.EqualFold(want[1:], sink.DomainPart(addr))
	}
	return addr != "" && strings.EqualFold(want, addr)
}
