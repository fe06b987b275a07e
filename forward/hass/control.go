package hass

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/edgesink/edgesink/forward/registry"
)

// ControlName is the Unix socket, beside the instance lock, on which a
// running edgesink answers 'edgesink devices list' and 'devices forget':
// forgetting must publish on the running instance's MQTT connection.
const ControlName = "devices.sock"

const controlTimeout = 15 * time.Second

// Request is one command on the control socket.
type Request struct {
	Op   string `json:"op"` // "list" or "forget"
	Name string `json:"name,omitempty"`
}

// Reply is the answer to a Request.
type Reply struct {
	Devices []registry.Device `json:"devices,omitempty"`
	Forgot  bool              `json:"forgot,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// ServeControl answers every connection on l with one Reply to one
// Request, and closes it. It returns when l is closed; the caller owns l.
func (o *Output) ServeControl(l net.Listener) error {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("hass: control socket: %w", err)
		}
		o.answer(c)
	}
}

func (o *Output) answer(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	var req Request
	var rep Reply
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		rep.Error = "bad request: " + err.Error()
	} else {
		switch req.Op {
		case "list":
			rep.Devices = o.reg.List()
		case "forget":
			rep.Forgot, err = o.Forget(req.Name)
			if err != nil {
				rep.Error = err.Error()
			}
		default:
			rep.Error = fmt.Sprintf("unknown op %q", req.Op)
		}
	}
	_ = json.NewEncoder(c).Encode(rep)
}

// ErrNotRunning: no edgesink answers on the control socket in that directory.
var ErrNotRunning = errors.New("hass: no running edgesink answers there")

// Ask sends req to the edgesink whose control socket is in dir (its lock
// directory) and returns its reply.
func Ask(dir string, req Request) (Reply, error) {
	path := filepath.Join(dir, ControlName)
	c, err := net.DialTimeout("unix", path, controlTimeout)
	if err != nil {
		return Reply{}, fmt.Errorf("%w (%s): %v", ErrNotRunning, path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Reply{}, fmt.Errorf("hass: ask %s: %w", path, err)
	}
	var rep Reply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return Reply{}, fmt.Errorf("hass: read %s: %w", path, err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
