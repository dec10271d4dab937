package sqlite

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer's WAL frames reach the file with one system call each.
//
// SQLite appends a frame to its WAL with two writes made back to back, the
// frame's 24-byte header and then its page, and its unix layer makes each a
// pwrite system call: four for a lone write-ahead (two frames), the largest
// part of a sequential sender's system calls. The writer opens its database
// through a thin file system layer of this package over SQLite's
// ("xmpptrack-pairs-" and the name of SQLite's, see pairVFS), which passes
// every call on to SQLite's layer and changes one thing on WAL files: a
// write of 24 bytes that starts at or past the end of everything written
// through the file handle since it last wrote the WAL's header (the header
// of a new frame) is held, and when the next call is the write of the bytes
// right after it (the frame's page) both go to SQLite's layer as one write.
// Every other call on the file, a write elsewhere included, first writes a
// held header.
//
// So the file receives SQLite's writes in SQLite's order, and nothing
// SQLite wrote stays in the layer when a call returns, except a new frame's
// header between the two writes of one frame: a commit is in the operating
// system when SQLite's commit returns, as without the layer. A process
// killed while a header is held leaves a frame with neither header nor
// page, which SQLite's recovery ignores as it ignores every frame after the
// last complete commit. What is not a new frame's header goes through at
// once: the WAL's 32-byte header, the pages SQLite rewrites within a
// transaction, and the frame headers it rewrites at commit to recompute
// their checksums (frames the handle wrote in that transaction, so below
// the end of what it wrote). Unlike a layer that gathered a transaction's
// frames (measured and withdrawn: see docs/benchmarks.md), it never holds
// more than one call's bytes, and never across a call that returns to the
// code above SQLite's WAL.

// pairFile is a WAL file's state in the layer, in the C memory that SQLite
// allocates for the file right after the base layer's part (pairVFS.off).
type pairFile struct {
	methods uintptr // the base layer's io methods of the file
	scratch uintptr // C memory of size bytes, for a header and its page
	size    int64
	// high is the end of the furthest write through the handle since it
	// last wrote the WAL's header.
	high int64
	held int64 // where the held header goes; -1: none
	hdr  [frameHeader]byte
}

// frameHeader is the size of a WAL frame's header, walHeader that of the
// WAL's own.
const (
	frameHeader = 24
	walHeader   = 32
)

// pairVFS is the layer over one of SQLite's file system layers.
type pairVFS struct {
	name string
	base uintptr // SQLite's sqlite3_vfs
	off  uintptr // where a file's pairFile starts in its sqlite3_file

	// The layer's functions, as SQLite calls them through its tables;
	// kept here so that what the tables point to stays reachable.
	fns struct {
		open     func(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32
		close    func(tls *libc.TLS, pFile uintptr) int32
		read     func(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32
		write    func(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32
		truncate func(tls *libc.TLS, pFile uintptr, size int64) int32
		sync     func(tls *libc.TLS, pFile uintptr, flags int32) int32
		fileSize func(tls *libc.TLS, pFile, pSize uintptr) int32
		control  func(tls *libc.TLS, pFile uintptr, op int32, arg uintptr) int32
	}

	mu      sync.Mutex
	methods map[uintptr]uintptr // a base io methods table → the layer's copy

	// pairs counts the frames written with one call, rewrites the frame
	// headers written at offsets below high (tests).
	pairs, rewrites atomic.Int64
}

// pairLayers are the layers registered in this process: SQLite keeps a
// registered layer for the life of the process, and so must this package
// the Go functions its tables point to.
var pairLayers struct {
	sync.Mutex
	all    []*pairVFS
	byBase map[string]*pairVFS // pairsOver's, by the name of the base layer
}

// pairsOver returns the layer over SQLite's layer named base ("": the
// default one), registering it on first use.
func pairsOver(base string) (*pairVFS, error) {
	pairLayers.Lock()
	defer pairLayers.Unlock()
	if v, ok := pairLayers.byBase[base]; ok {
		return v, nil
	}
	v, err := registerPairsLocked(base, "xmpptrack-pairs-")
	if err != nil {
		return nil, err
	}
	if pairLayers.byBase == nil {
		pairLayers.byBase = map[string]*pairVFS{}
	}
	pairLayers.byBase[base] = v
	return v, nil
}

// registerPairs registers a layer named prefix and the base layer's name
// over SQLite's layer named base ("": the default one).
func registerPairs(base, prefix string) (*pairVFS, error) {
	pairLayers.Lock()
	defer pairLayers.Unlock()
	return registerPairsLocked(base, prefix)
}

func registerPairsLocked(base, prefix string) (*pairVFS, error) {
	tls := libc.NewTLS()
	defer tls.Close()
	var zBase uintptr // 0: the default layer
	if base != "" {
		z, err := libc.CString(base)
		if err != nil {
			return nil, err
		}
		defer libc.Xfree(tls, z)
		zBase = z
	}
	pBase := sqlite3.Xsqlite3_vfs_find(tls, zBase)
	if pBase == 0 {
		return nil, fmt.Errorf("sqlite: no file system layer %q", base)
	}
	b := (*sqlite3.Tsqlite3_vfs)(cmem(pBase))
	v := &pairVFS{
		name:    prefix + libc.GoString(b.FzName),
		base:    pBase,
		off:     (uintptr(b.FszOsFile) + 7) &^ 7,
		methods: map[uintptr]uintptr{},
	}
	fn := &v.fns
	fn.open, fn.close, fn.read, fn.write = v.xOpen, v.xClose, v.xRead, v.xWrite
	fn.truncate, fn.sync, fn.fileSize, fn.control = v.xTruncate, v.xSync, v.xFileSize, v.xFileControl
	zName, err := libc.CString(v.name) // kept: SQLite refers to it
	if err != nil {
		return nil, err
	}
	p := sqlite3.Xsqlite3_malloc64(tls, uint64(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	if p == 0 {
		libc.Xfree(tls, zName)
		return nil, fmt.Errorf("sqlite: registering %s: out of memory", v.name)
	}
	ours := (*sqlite3.Tsqlite3_vfs)(cmem(p))
	*ours = *b
	ours.FszOsFile = int32(v.off + unsafe.Sizeof(pairFile{}))
	ours.FpNext = 0
	ours.FzName = zName
	ours.FxOpen = cfunc(v.fns.open)
	pairLayers.all = append(pairLayers.all, v) // before SQLite can call it
	if rc := sqlite3.Xsqlite3_vfs_register(tls, p, 0); rc != sqlite3.SQLITE_OK {
		pairLayers.all = pairLayers.all[:len(pairLayers.all)-1]
		sqlite3.Xsqlite3_free(tls, p)
		libc.Xfree(tls, zName)
		return nil, fmt.Errorf("sqlite: registering %s: code %d", v.name, rc)
	}
	return v, nil
}

// cmem makes a pointer of an address of C memory (SQLite's, outside Go's
// heap).
func cmem(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }

// cbytes is the C memory of n bytes at p.
func cbytes(p uintptr, n int) []byte { return unsafe.Slice((*byte)(cmem(p)), n) }

// cfunc is a Go function as SQLite's code calls function pointers.
func cfunc(f any) uintptr { return (*[2]uintptr)(unsafe.Pointer(&f))[1] }

// call is the function at a function pointer of SQLite's tables.
func call[F any](p uintptr) F { return *(*F)(unsafe.Pointer(&p)) }

// The base layer's functions, called through their pointers.
type (
	openFn    = func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32
	closeFn   = func(*libc.TLS, uintptr) int32
	rwFn      = func(*libc.TLS, uintptr, uintptr, int32, int64) int32
	truncFn   = func(*libc.TLS, uintptr, int64) int32
	syncFn    = func(*libc.TLS, uintptr, int32) int32
	sizeFn    = func(*libc.TLS, uintptr, uintptr) int32
	controlFn = func(*libc.TLS, uintptr, int32, uintptr) int32
)

// file returns the layer's state of the WAL file at pFile.
func (v *pairVFS) file(pFile uintptr) *pairFile { return (*pairFile)(cmem(pFile + v.off)) }

func (f *pairFile) base() *sqlite3.Tsqlite3_io_methods {
	return (*sqlite3.Tsqlite3_io_methods)(cmem(f.methods))
}

// xOpen opens the file with the base layer; a WAL gets the layer's io
// methods.
func (v *pairVFS) xOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	b := (*sqlite3.Tsqlite3_vfs)(cmem(v.base))
	rc := call[openFn](b.FxOpen)(tls, v.base, zName, pFile, flags, pOutFlags)
	if rc != sqlite3.SQLITE_OK || flags&sqlite3.SQLITE_OPEN_WAL == 0 {
		return rc
	}
	sf := (*sqlite3.Tsqlite3_file)(cmem(pFile))
	if sf.FpMethods == 0 {
		return rc
	}
	ours := v.methodsFor(tls, sf.FpMethods)
	if ours == 0 {
		return rc // out of memory: the WAL as SQLite writes it
	}
	*v.file(pFile) = pairFile{methods: sf.FpMethods, held: -1}
	sf.FpMethods = ours
	return rc
}

// methodsFor returns the layer's io methods over the base table base: a
// copy with the layer's functions where it changes something.
func (v *pairVFS) methodsFor(tls *libc.TLS, base uintptr) uintptr {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ours, ok := v.methods[base]; ok {
		return ours
	}
	ours := sqlite3.Xsqlite3_malloc64(tls, uint64(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
	if ours == 0 {
		return 0
	}
	m := (*sqlite3.Tsqlite3_io_methods)(cmem(ours))
	*m = *(*sqlite3.Tsqlite3_io_methods)(cmem(base))
	fn := &v.fns
	m.FxClose = cfunc(fn.close)
	m.FxRead = cfunc(fn.read)
	m.FxWrite = cfunc(fn.write)
	m.FxTruncate = cfunc(fn.truncate)
	m.FxSync = cfunc(fn.sync)
	m.FxFileSize = cfunc(fn.fileSize)
	m.FxFileControl = cfunc(fn.control)
	v.methods[base] = ours // kept for the process's life, as SQLite keeps its own
	return ours
}

// flush writes a held header.
func (v *pairVFS) flush(tls *libc.TLS, pFile uintptr) int32 {
	f := v.file(pFile)
	if f.held < 0 {
		return sqlite3.SQLITE_OK
	}
	off := f.held
	f.held = -1
	hdr := pFile + v.off + unsafe.Offsetof(f.hdr)
	return call[rwFn](f.base().FxWrite)(tls, pFile, hdr, frameHeader, off)
}

func (v *pairVFS) xWrite(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32 {
	f := v.file(pFile)
	if f.held >= 0 {
		if off == f.held+frameHeader {
			return v.writePair(tls, pFile, buf, n)
		}
		if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	if n == frameHeader && off >= walHeader {
		if off >= f.high {
			// An array's assignment, not copy: with copy here go1.26.8's
			// compiler stops with an internal compiler error
			// ("disjointTypes: one of arguments is not a pointer").
			f.hdr = *(*[frameHeader]byte)(cmem(buf))
			f.held = off
			f.high = off + frameHeader
			return sqlite3.SQLITE_OK
		}
		v.rewrites.Add(1)
	}
	rc := call[rwFn](f.base().FxWrite)(tls, pFile, buf, n, off)
	if off == 0 {
		f.high = int64(n) // the WAL's header: it starts again
	} else if end := off + int64(n); end > f.high {
		f.high = end
	}
	return rc
}

// writePair writes the held header and the n bytes at buf after it with one
// call of the base layer.
func (v *pairVFS) writePair(tls *libc.TLS, pFile, buf uintptr, n int32) int32 {
	f := v.file(pFile)
	total := int64(frameHeader) + int64(n)
	if total > f.size {
		p := sqlite3.Xsqlite3_realloc64(tls, f.scratch, uint64(total))
		if p == 0 { // out of memory: the two writes as SQLite makes them
			off := f.held
			if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
				return rc
			}
			f.high = max(f.high, off+total)
			return call[rwFn](f.base().FxWrite)(tls, pFile, buf, n, off+frameHeader)
		}
		f.scratch, f.size = p, total
	}
	s := cbytes(f.scratch, int(total))
	copy(s, f.hdr[:])
	copy(s[frameHeader:], cbytes(buf, int(n)))
	off := f.held
	f.held = -1
	if end := off + total; end > f.high {
		f.high = end
	}
	v.pairs.Add(1)
	return call[rwFn](f.base().FxWrite)(tls, pFile, f.scratch, int32(total), off)
}

func (v *pairVFS) xRead(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32 {
	if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[rwFn](v.file(pFile).base().FxRead)(tls, pFile, buf, n, off)
}

func (v *pairVFS) xTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[truncFn](v.file(pFile).base().FxTruncate)(tls, pFile, size)
}

func (v *pairVFS) xSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[syncFn](v.file(pFile).base().FxSync)(tls, pFile, flags)
}

func (v *pairVFS) xFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[sizeFn](v.file(pFile).base().FxFileSize)(tls, pFile, pSize)
}

func (v *pairVFS) xFileControl(tls *libc.TLS, pFile uintptr, op int32, arg uintptr) int32 {
	if rc := v.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[controlFn](v.file(pFile).base().FxFileControl)(tls, pFile, op, arg)
}

func (v *pairVFS) xClose(tls *libc.TLS, pFile uintptr) int32 {
	frc := v.flush(tls, pFile)
	f := v.file(pFile)
	if f.scratch != 0 {
		sqlite3.Xsqlite3_free(tls, f.scratch)
		f.scratch, f.size = 0, 0
	}
	rc := call[closeFn](f.base().FxClose)(tls, pFile)
	if rc == sqlite3.SQLITE_OK {
		rc = frc
	}
	return rc
}
