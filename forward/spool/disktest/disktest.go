// Package disktest is a test kit: a FUSE filesystem that behaves like a disk
// when the power goes. It keeps only what was fsynced, as LazyFS models it:
// a file's data as of the file's last fsync, a directory's entries (new
// files, subdirectories, removals and renames alike) as of the directory's
// last fsync. Cut throws the rest away, as a power cut would; mounting
// again shows what a board would find at the next boot.
//
// Metadata other than size (modes, owners, times) is not modelled. Mounting
// needs /dev/fuse and the right to mount (root, or fusermount3 from fuse3).
package disktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/edgesink/edgesink/deploy/testtools"
)

// image is what the disk holds for certain: the durable state.
type image struct {
	data     []byte            // files
	children map[string]*image // directories (nil for files)
}

// Disk is a filesystem image that survives mounts and power cuts.
type Disk struct {
	mu      sync.Mutex
	durable *image   // what a power cut leaves
	root    *dirNode // the mounted tree, nil when not mounted
	server  *fuse.Server
	dir     string
	stats   Stats
	fail    syscall.Errno // answer to every change while set
	stall   chan struct{} // while not nil, fsyncs wait until it is closed
}

// Stats counts the durability calls the filesystem saw since New.
type Stats struct {
	FileSyncs, DirSyncs int
}

// New returns an empty disk.
func New() *Disk {
	return &Disk{durable: &image{children: map[string]*image{}}}
}

// Available reports why a disk cannot be mounted here, or nil.
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("disktest: %w (install fuse3; in a container, pass /dev/fuse)", err)
	}
	return f.Close()
}

// Mount mounts the disk at dir (an existing empty directory) with what it
// durably holds.
func (d *Disk) Mount(dir string) error {
	d.mu.Lock()
	if d.server != nil || d.root != nil {
		d.mu.Unlock()
		return errors.New("disktest: already mounted")
	}
	root := &dirNode{disk: d, durable: map[string]node{}, img: d.durable}
	d.root = root
	d.mu.Unlock()
	zero := time.Duration(0)
	server, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:      "disktest",
			Name:        "disktest",
			DirectMount: true,
		},
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.root = nil
		return fmt.Errorf("disktest: mount %s: %w", dir, err)
	}
	d.server, d.dir = server, dir
	return nil
}

// Unmount unmounts the disk; what was written stays until Cut.
func (d *Disk) Unmount() error {
	d.mu.Lock()
	server := d.server
	d.mu.Unlock()
	if server == nil {
		return nil
	}
	var err error
	for range 50 { // busy while a killed process's files are still closing
		if err = server.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("disktest: unmount %s: %w", d.dir, err)
	}
	server.Wait()
	d.mu.Lock()
	d.server = nil
	d.mu.Unlock()
	return nil
}

// Cut is the power cut: the disk unmounts and keeps only what was fsynced.
// Mount it again to see what is left.
func (d *Disk) Cut() error {
	if err := d.Unmount(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root != nil {
		d.durable = d.root.persisted(map[node]*image{})
		d.root = nil
	}
	return nil
}

// Fail makes every change to the disk (creating, writing, renaming,
// removing, fsync) fail with errno from now on, as a disk that went
// read-only (syscall.EROFS) or bad (syscall.EIO) would; 0 heals it.
func (d *Disk) Fail(errno syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = errno
}

// Stall makes every fsync hang, as a dying SD card's do, until Resume.
func (d *Disk) Stall() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stall == nil {
		d.stall = make(chan struct{})
	}
}

// Resume lets stalled fsyncs finish.
func (d *Disk) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stall != nil {
		close(d.stall)
		d.stall = nil
	}
}

// waitStall blocks while the disk is stalled.
func (d *Disk) waitStall() {
	d.mu.Lock()
	stall := d.stall
	d.mu.Unlock()
	if stall != nil {
		<-stall
	}
}

// failing reports the errno changes get now, or 0.
func (d *Disk) failing() syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fail
}

// Stats returns the durability calls seen so far.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// node is a file or directory of the mounted tree.
type node interface {
	fs.InodeEmbedder
	persisted(seen map[node]*image) *image
}

// fileNode is a regular file: data as written, synced as of its last fsync.
type fileNode struct {
	fs.Inode
	disk         *Disk
	data, synced []byte
}

// dirNode is a directory: its entries live in the embedded Inode's
// children (what programs see); durable is the set as of the last fsync.
type dirNode struct {
	fs.Inode
	disk    *Disk
	durable map[string]node
	img     *image // what to fill it with at mount
}

var (
	_ fs.NodeOnAdder   = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeFsyncer   = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
	_ fs.NodeFsyncer   = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeFlusher   = (*fileNode)(nil)
)

// OnAdd fills a directory with its durable image when the disk is mounted.
func (n *dirNode) OnAdd(ctx context.Context) {
	img := n.img
	n.img = nil
	if img == nil {
		return
	}
	for name, child := range img.children {
		var ch node
		mode := uint32(syscall.S_IFREG)
		if child.children != nil {
			ch, mode = &dirNode{disk: n.disk, durable: map[string]node{}, img: child}, syscall.S_IFDIR
		} else {
			data := append([]byte(nil), child.data...)
			ch = &fileNode{disk: n.disk, data: data, synced: append([]byte(nil), data...)}
		}
		n.AddChild(name, n.NewPersistentInode(ctx, ch, fs.StableAttr{Mode: mode}), false)
		n.durable[name] = ch
	}
}

func (n *dirNode) persisted(seen map[node]*image) *image {
	if img, ok := seen[n]; ok {
		return img
	}
	img := &image{children: map[string]*image{}}
	seen[n] = img
	for name, ch := range n.durable {
		img.children[name] = ch.persisted(seen)
	}
	return img
}

func (n *fileNode) persisted(seen map[node]*image) *image {
	if img, ok := seen[n]; ok {
		return img
	}
	img := &image{data: append([]byte{}, n.synced...)}
	seen[n] = img
	return img
}

func (n *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	return 0
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.disk.failing(); errno != 0 {
		return nil, errno
	}
	if n.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	sub := &dirNode{disk: n.disk, durable: map[string]node{}}
	out.Mode = syscall.S_IFDIR | 0o755
	return n.NewPersistentInode(ctx, sub, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (n *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.disk.failing(); errno != 0 {
		return nil, nil, 0, errno
	}
	if ch := n.GetChild(name); ch != nil {
		// O_CREAT without O_EXCL on an existing name arrives as an open.
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		f, ok := ch.Operations().(*fileNode)
		if !ok {
			return nil, nil, 0, syscall.EISDIR
		}
		if flags&syscall.O_TRUNC != 0 {
			n.disk.mu.Lock()
			f.data = nil
			n.disk.mu.Unlock()
		}
		return ch, nil, 0, 0
	}
	f := &fileNode{disk: n.disk}
	out.Mode = syscall.S_IFREG | 0o600
	return n.NewPersistentInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG}), nil, 0, 0
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.disk.failing(); errno != 0 {
		return errno
	}
	ch := n.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	if ch.IsDir() {
		return syscall.EISDIR
	}
	return 0
}

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.disk.failing(); errno != 0 {
		return errno
	}
	ch := n.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	if !ch.IsDir() {
		return syscall.ENOTDIR
	}
	if len(ch.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

func (n *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.disk.failing(); errno != 0 {
		return errno
	}
	ch := n.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	if flags != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE/NOREPLACE: not needed
	}
	if old := newParent.EmbeddedInode().GetChild(newName); old != nil && old.IsDir() && len(old.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

// Fsync on a directory makes its current entries durable.
func (n *dirNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	n.disk.waitStall()
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	if n.disk.fail != 0 {
		return n.disk.fail
	}
	n.durable = map[string]node{}
	for name, ch := range n.Children() {
		if nd, ok := ch.Operations().(node); ok {
			n.durable[name] = nd
		}
	}
	n.disk.stats.DirSyncs++
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.disk.failing(); errno != 0 && flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		n.disk.mu.Lock()
		n.data = nil
		n.disk.mu.Unlock()
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	off = min(off, int64(len(n.data)))
	end := min(off+int64(len(dest)), int64(len(n.data)))
	return fuse.ReadResultData(append([]byte(nil), n.data[off:end]...)), 0
}

func (n *fileNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	if n.disk.fail != 0 {
		return 0, n.disk.fail
	}
	if end := off + int64(len(data)); end > int64(len(n.data)) {
		grown := make([]byte, end)
		copy(grown, n.data)
		n.data = grown
	}
	copy(n.data[off:], data)
	return uint32(len(data)), 0
}

// Fsync on a file makes its current data durable (not its name).
func (n *fileNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	n.disk.waitStall()
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	if n.disk.fail != 0 {
		return n.disk.fail
	}
	n.synced = append([]byte{}, n.data...)
	n.disk.stats.FileSyncs++
	return 0
}

func (n *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(len(n.data))
	return 0
}

func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	if n.disk.fail != 0 {
		return n.disk.fail
	}
	if size, ok := in.GetSize(); ok {
		resized := make([]byte, size)
		copy(resized, n.data)
		n.data = resized
	}
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(len(n.data))
	return 0
}

// Start mounts a new disk in a temporary directory for the length of t and
// returns it with the mount point. Without FUSE the test is skipped, or
// fails when CI is set (testtools.Unavailable): a power-cut test that cannot
// run is no pass.
func Start(t testing.TB) (*Disk, string) {
	t.Helper()
	if err := Available(); err != nil {
		testtools.Unavailable(t, "power-cut test needs FUSE: %v", err)
	}
	d, dir := New(), t.TempDir()
	if err := d.Mount(dir); err != nil {
		testtools.Unavailable(t, "power-cut test: %v (mounting needs root, or fusermount3 from fuse3)", err)
	}
	t.Cleanup(func() {
		if err := d.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return d, dir
}

// CutAndMount is the power cut followed by the next boot: it fails t if the
// disk cannot be cut or mounted again.
func (d *Disk) CutAndMount(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	dir := d.dir
	d.mu.Unlock()
	if err := d.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := d.Mount(dir); err != nil {
		t.Fatal(err)
	}
}

// Tree lists every path under root with its mode, size and time of last
// change, sorted: two calls that return the same list saw no write between
// them (for tests that promise a mode writes nothing).
func Tree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v %d %s", path, fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
