package hass

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgesink/edgesink/forward/registry"
	"github.com/edgesink/edgesink/sink"
	"github.com/edgesink/edgesink/sink/config"
)

// Snapshot stores.
const (
	StoreLatest = "latest" // held in memory until published; the latest per device and channel kept on disk, no fsync
	StoreDisk   = "disk"   // durable like the alert, content-addressed by SHA-256
	StoreOff    = "off"    // no snapshots
)

// Snapshot defaults.
const (
	DefaultMaxSnapshot = 1 << 20
	DefaultMaxRetained = 16 << 20
	// pendingFactor bounds the images held in memory waiting for their
	// alert's delivery (store latest): this many times max_size.
	pendingFactor = 8
	// pendingMaxAge: an image held this long (its alert was dead-lettered,
	// or the broker is down for long) gives way to a new one.
	pendingMaxAge = time.Hour
	// diskKeep is how long a disk-store image no delivery is known to wait
	// for survives (one left behind by a dead letter or a crash).
	diskKeep = 7 * 24 * time.Hour
)

// SnapshotConfig is the snapshots section of the configuration file.
type SnapshotConfig struct {
	Store       string `yaml:"store"`                     // StoreLatest (default), StoreDisk or StoreOff
	MaxSize     int64  `yaml:"max_size" unit:"bytes"`     // largest image taken from a mail
	MaxRetained int64  `yaml:"max_retained" unit:"bytes"` // retained snapshot bytes left on the broker, all topics together
	Dir         string `yaml:"-"`                         // cmd: snapshots/ in the instance's directory; "" keeps nothing on disk
}

// DefaultSnapshotConfig is what edgesink runs with unless told otherwise.
func DefaultSnapshotConfig() SnapshotConfig {
	return SnapshotConfig{Store: StoreLatest, MaxSize: DefaultMaxSnapshot, MaxRetained: DefaultMaxRetained}
}

// Validate reports the first setting that cannot work (errors name the key).
func (c SnapshotConfig) Validate() error {
	switch c.Store {
	case StoreLatest, StoreDisk, StoreOff:
	default:
		return config.Bad("store", "%q: want latest, disk or off", c.Store)
	}
	if c.MaxSize <= 0 {
		return config.Bad("max_size", "must be greater than zero")
	}
	if c.MaxRetained < c.MaxSize {
		return config.Bad("max_retained", "must be at least max_size")
	}
	return nil
}

// Snapshots takes the images out of alerts as they are accepted and keeps
// them until their alert is published (Stage), then remembers the latest
// per device and channel, so it is republished after a restart.
type Snapshots struct {
	cfg SnapshotConfig
	log *slog.Logger

	mu           sync.Mutex
	pending      map[string]*held // by SHA-256 (hex)
	pendingBytes int64
	retained     map[string]retainedShot // by topic
	seq          uint64
}

type held struct {
	data []byte // nil in store disk: the bytes are in the file
	refs int
	at   time.Time // when it came; what waits longer than pendingMaxAge may make room
}

type retainedShot struct {
	size   int
	seq    uint64
	device string
	file   string // its latest file, "" if none
}

// shot is an image ready to publish.
type shot struct {
	sha  string
	data []byte
}

// OpenSnapshots checks cfg and prepares its directory.
func OpenSnapshots(cfg SnapshotConfig, log *slog.Logger) (*Snapshots, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	s := &Snapshots{cfg: cfg, log: log.With("component", "snapshots"), pending: map[string]*held{}, retained: map[string]retainedShot{}}
	if cfg.Store == StoreDisk {
		if cfg.Dir == "" {
			return nil, config.Bad("store", "disk needs a directory")
		}
		s.gcDisk()
	}
	return s, nil
}

// Stage wraps next, the rest of the pipeline: each alert's images are
// recognised by their bytes (cameras send JPEGs as
// application/octet-stream), the last one within max_size is kept for
// publishing, and every attachment's bytes are dropped from the alert
// before next sees it, so the queue never holds them. In store disk the
// image is on disk, fsynced, before next is called. A nil *Snapshots (no
// Home Assistant) only drops the bytes.
func (s *Snapshots) Stage(next sink.Handler) sink.Handler {
	return sink.HandlerFunc(func(ctx context.Context, a *sink.Alert) error {
		sha, data := s.take(a)
		if sha == "" {
			return next.Handle(ctx, a)
		}
		kept := s.hold(sha, data)
		err := next.Handle(ctx, a)
		if err != nil && kept {
			s.release(sha, false) // the device sends it again
		}
		return err
	})
}

// take returns the last image of a within max_size and clears every
// attachment's bytes.
func (s *Snapshots) take(a *sink.Alert) (sha string, data []byte) {
	for i := range a.Attachments {
		at := &a.Attachments[i]
		d := at.Data
		at.Data = nil
		if s == nil || s.cfg.Store == StoreOff || len(d) == 0 || int64(len(d)) > s.cfg.MaxSize {
			continue
		}
		if _, err := hex.DecodeString(at.SHA256); err != nil || len(at.SHA256) != 64 {
			continue
		}
		sha, data = at.SHA256, d
	}
	return sha, data
}

// hold keeps an image until its alert is published; false when it could
// not (memory budget, disk error): the alert goes out without it.
func (s *Snapshots) hold(sha string, data []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.pending[sha]; h != nil {
		h.refs++ // a storm of identical frames: one copy
		return true
	}
	if s.cfg.Store == StoreDisk {
		path := s.contentPath(sha)
		if _, err := os.Stat(path); err != nil {
			if err := registry.WriteFileDurably(path, data, 0o640); err != nil {
				s.log.Warn("snapshot not stored; the alert goes without it", "sha256", sha, "err", err)
				return false
			}
		}
		s.pending[sha] = &held{refs: 1, at: time.Now()}
		return true
	}
	if s.pendingBytes+int64(len(data)) > pendingFactor*s.cfg.MaxSize {
		for k, h := range s.pending {
			if time.Since(h.at) > pendingMaxAge {
				delete(s.pending, k)
				s.pendingBytes -= int64(len(h.data))
			}
		}
	}
	if s.pendingBytes+int64(len(data)) > pendingFactor*s.cfg.MaxSize {
		s.log.Warn("too many snapshots waiting for delivery; this alert goes without its image", "sha256", sha)
		return false
	}
	s.pending[sha] = &held{data: bytes.Clone(data), refs: 1, at: time.Now()}
	s.pendingBytes += int64(len(data))
	return true
}

// release drops one reference to an image held for an alert; published
// tells that the alert went out (store disk then removes the file when no
// other alert waits for it).
func (s *Snapshots) release(sha string, published bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.pending[sha]
	if h == nil {
		return
	}
	if h.refs--; h.refs > 0 {
		return
	}
	delete(s.pending, sha)
	s.pendingBytes -= int64(len(h.data))
	if s.cfg.Store == StoreDisk && published {
		_ = os.Remove(s.contentPath(sha))
	}
}

// forAlert finds the image held for a, nil if none.
func (s *Snapshots) forAlert(a *sink.Alert) *shot {
	if s == nil || s.cfg.Store == StoreOff {
		return nil
	}
	for i := len(a.Attachments) - 1; i >= 0; i-- {
		sha := a.Attachments[i].SHA256
		if len(sha) != 64 {
			continue
		}
		if _, err := hex.DecodeString(sha); err != nil {
			continue
		}
		s.mu.Lock()
		h := s.pending[sha]
		s.mu.Unlock()
		switch {
		case h != nil && h.data != nil:
			return &shot{sha: sha, data: h.data}
		case s.cfg.Store == StoreDisk:
			// Also an alert recovered from the spool after a restart.
			if data, err := os.ReadFile(s.contentPath(sha)); err == nil {
				return &shot{sha: sha, data: data}
			}
		}
	}
	return nil
}

// published records that sh went out retained on topic for device (file
// names its latest file) and returns the topics to clear so the retained
// snapshots stay within max_retained, least recently published first.
func (s *Snapshots) published(sh *shot, device string, topics, files []string) (clear []string) {
	for _, f := range files {
		s.writeLatest(f, sh.data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range topics {
		s.seq++
		s.retained[t] = retainedShot{size: len(sh.data), seq: s.seq, device: device, file: files[i]}
	}
	return s.evictLocked()
}

func (s *Snapshots) evictLocked() (clear []string) {
	var total int64
	for _, r := range s.retained {
		total += int64(r.size)
	}
	for total > s.cfg.MaxRetained && len(s.retained) > 1 {
		oldest := ""
		for t, r := range s.retained {
			if oldest == "" || r.seq < s.retained[oldest].seq {
				oldest = t
			}
		}
		r := s.retained[oldest]
		delete(s.retained, oldest)
		total -= int64(r.size)
		if r.file != "" {
			_ = os.Remove(r.file)
		}
		clear = append(clear, oldest)
	}
	return clear
}

// forget drops what is kept of device and returns its snapshot topics.
func (s *Snapshots) forget(device string) []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var topics []string
	for t, r := range s.retained {
		if r.device == device {
			topics = append(topics, t)
			if r.file != "" {
				_ = os.Remove(r.file)
			}
			delete(s.retained, t)
		}
	}
	sort.Strings(topics)
	return topics
}

// latestFile is where the latest image of device (and channel) is kept:
// latest/<device>.jpg, latest/<device>@<channel>.jpg ('@' is in no safe
// name). "" without a directory.
func (s *Snapshots) latestFile(device, channel string) string {
	if s == nil || s.cfg.Dir == "" || s.cfg.Store == StoreOff {
		return ""
	}
	name := device
	if channel != "" {
		name += "@" + channel
	}
	return filepath.Join(s.cfg.Dir, "latest", name+".jpg")
}

// Snapshot is device's latest image as kept on disk (snapshots.store
// latest or disk, with a state directory), for the status page. A name that
// is not a device name (a path, say) finds nothing.
func (s *Snapshots) Snapshot(device string) ([]byte, bool) {
	p := s.latestPath(device)
	if p == "" {
		return nil, false
	}
	data, err := os.ReadFile(p)
	return data, err == nil
}

// HasSnapshot tells whether Snapshot would find an image for device.
func (s *Snapshots) HasSnapshot(device string) bool {
	p := s.latestPath(device)
	if p == "" {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func (s *Snapshots) latestPath(device string) string {
	if device == "" || sink.SafeName(device) != device {
		return ""
	}
	return s.latestFile(device, "")
}

// writeLatest replaces a latest file without fsync: best effort, one
// write per published snapshot, none on the queue's path.
func (s *Snapshots) writeLatest(path string, data []byte) {
	if path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		s.log.Debug("snapshot: latest not kept", "err", err)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		s.log.Debug("snapshot: latest not kept", "err", err)
		return
	}
	_ = os.Rename(tmp, path)
}

// kept is one latest image found on disk at start.
type kept struct {
	device, channel, file string
	data                  []byte
}

// latest lists the latest images kept on disk, for republishing them
// after a restart; registered tells which devices still exist.
func (s *Snapshots) latest(registered func(string) bool) []kept {
	if s == nil || s.cfg.Dir == "" || s.cfg.Store == StoreOff {
		return nil
	}
	dir := filepath.Join(s.cfg.Dir, "latest")
	entries, _ := os.ReadDir(dir)
	var out []kept
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".jpg")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		device, channel, _ := strings.Cut(name, "@")
		path := filepath.Join(dir, e.Name())
		if sink.SafeName(device) != device || (channel != "" && sink.SafeName(channel) != channel) || !registered(device) {
			_ = os.Remove(path)
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() > s.cfg.MaxSize {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		out = append(out, kept{device: device, channel: channel, file: path, data: data})
	}
	return out
}

// contentPath is an image's file in store disk: sha256/<hex>.jpg.
func (s *Snapshots) contentPath(sha string) string {
	return filepath.Join(s.cfg.Dir, "sha256", sha+".jpg")
}

// gcDisk removes content files older than diskKeep: no delivery waits
// for them any more.
func (s *Snapshots) gcDisk() {
	dir := filepath.Join(s.cfg.Dir, "sha256")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > diskKeep {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
