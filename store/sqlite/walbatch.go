package sqlite

import (
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer's WAL writes are batched: one pwrite per transaction instead
// of two per page.
//
// SQLite writes each frame of a transaction to the WAL with two calls of
// the file's xWrite, its 24-byte header and then its page, and the unix
// file system layer makes each a pwrite system call: a lone write-ahead
// (two pages) cost four, and their kernel work was the largest part of a
// sequential sender's CPU (13% of it through the client, ejabberd,
// 2026-12-06). The writer opens its database through a file system layer
// of this package ("xmpptrack-" and the name of SQLite's, see batchVFS)
// that is SQLite's own for every file but the WAL, where the xWrite calls
// that append to the file are gathered in memory and written with one
// pwrite when SQLite writes the page of the transaction's commit frame
// (the frame whose header holds the database's size, which only a commit
// frame does): the last write of a transaction, and SQLite takes the
// transaction for written only once it returned. So a commit is in the
// operating system, as without the batching, when Commit returns, and a
// process killed at any moment leaves in the file a prefix of what SQLite
// wrote, in its order: a transaction whose commit frame is not complete is
// ignored by SQLite's recovery anyway (its checksums).
//
// Every other call on the WAL (a read, a sync, a truncation, the size, a
// file control, the close) and every write that is not an append (the WAL
// header at the start of a new WAL, and SQLite's rewrites of frames of the
// transaction under way) first writes what is gathered, so that the file
// sees exactly SQLite's writes, in its order. A transaction larger than
// batchMax (128 KiB) is written in pieces of at most batchMax. A failed write of the
// gathered frames fails the call that made it, which fails the
// transaction (SQLite rolls it back).

// batchMax bounds the bytes gathered before a write: SQLite's unix layer
// writes at most 0x1ffff bytes with one call (it masks larger sizes).
const batchMax = 0x1ffff

// frameHeader is the size of a WAL frame's header.
const frameHeader = 24

// walFile is the batching state of one open WAL file.
type walFile struct {
	base uintptr // the file's io methods, from the base VFS
	buf  uintptr // C memory of size, holding n bytes to write at off
	size int
	n    int
	off  int64
	// end is the end of the last append: a write below it is a rewrite.
	end int64
	// commit is where the page of the commit frame whose header is
	// gathered starts; -1 if none.
	commit int64
	// writes counts the base xWrite calls (tests).
	writes int
}

// batch holds the registered file system layers and the open WAL files.
var batch struct {
	mu      sync.Mutex
	vfs     map[string]string   // base VFS name → ours
	base    map[uintptr]uintptr // our VFS → its base VFS
	methods map[uintptr]uintptr // a base io methods table → ours
	files   map[uintptr]*walFile
}

// batchVFS returns the name of the batching layer over the VFS named
// base, registering it on first use.
func batchVFS(base string) (string, error) {
	batch.mu.Lock()
	defer batch.mu.Unlock()
	if name, ok := batch.vfs[base]; ok {
		return name, nil
	}
	tls := libc.NewTLS()
	defer tls.Close()
	var zBase uintptr // nil: the default VFS
	if base != "" {
		var err error
		if zBase, err = libc.CString(base); err != nil {
			return "", err
		}
		defer libc.Xfree(tls, zBase)
	}
	pBase := sqlite3.Xsqlite3_vfs_find(tls, zBase)
	if pBase == 0 {
		return "", fmt.Errorf("sqlite: no VFS %q", base)
	}
	name := "xmpptrack-" + libc.GoString((*sqlite3.Tsqlite3_vfs)(cptr(pBase)).FzName)
	zName, err := libc.CString(name) // kept: SQLite refers to it
	if err != nil {
		return "", err
	}
	p := sqlite3.Xsqlite3_malloc64(tls, uint64(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	if p == 0 {
		return "", fmt.Errorf("sqlite: registering VFS %q: out of memory", name)
	}
	v := (*sqlite3.Tsqlite3_vfs)(cptr(p))
	*v = *(*sqlite3.Tsqlite3_vfs)(cptr(pBase))
	v.FpNext = 0
	v.FzName = zName
	v.FxOpen = cfunc(batchOpen)
	if batch.vfs == nil {
		batch.vfs = map[string]string{}
		batch.base = map[uintptr]uintptr{}
		batch.methods = map[uintptr]uintptr{}
		batch.files = map[uintptr]*walFile{}
	}
	batch.base[p] = pBase // before SQLite can use it
	if rc := sqlite3.Xsqlite3_vfs_register(tls, p, 0); rc != sqlite3.SQLITE_OK {
		return "", fmt.Errorf("sqlite: registering VFS %q: code %d", name, rc)
	}
	batch.vfs[base] = name
	return name, nil
}

// cptr makes a pointer of an address of C memory (SQLite's, outside Go's
// heap).
func cptr(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }

// cbytes is the C memory of n bytes at p.
func cbytes(p uintptr, n int) []byte { return unsafe.Slice((*byte)(cptr(p)), n) }

// cfunc returns a Go function as SQLite's code calls function pointers.
func cfunc(f any) uintptr { return (*[2]uintptr)(unsafe.Pointer(&f))[1] }

// The base VFS's and file's functions, called through their pointers.
type (
	openFn     = func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32
	closeFn    = func(*libc.TLS, uintptr) int32
	rwFn       = func(*libc.TLS, uintptr, uintptr, int32, int64) int32
	truncateFn = func(*libc.TLS, uintptr, int64) int32
	syncFn     = func(*libc.TLS, uintptr, int32) int32
	sizeFn     = func(*libc.TLS, uintptr, uintptr) int32
	controlFn  = func(*libc.TLS, uintptr, int32, uintptr) int32
)

// call makes a function of type F from a function pointer.
func call[F any](p uintptr) F { return *(*F)(unsafe.Pointer(&p)) }

// batchOpen is the layer's xOpen: the base VFS opens the file; a WAL gets
// the batching io methods.
func batchOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	batch.mu.Lock()
	pBase := batch.base[pVfs]
	batch.mu.Unlock()
	rc := call[openFn]((*sqlite3.Tsqlite3_vfs)(cptr(pBase)).FxOpen)(tls, pBase, zName, pFile, flags, pOutFlags)
	if rc != sqlite3.SQLITE_OK || flags&sqlite3.SQLITE_OPEN_WAL == 0 {
		return rc
	}
	f := (*sqlite3.Tsqlite3_file)(cptr(pFile))
	if f.FpMethods == 0 {
		return rc
	}
	batch.mu.Lock()
	defer batch.mu.Unlock()
	ours, ok := batch.methods[f.FpMethods]
	if !ok {
		ours = sqlite3.Xsqlite3_malloc64(tls, uint64(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
		if ours == 0 {
			return rc // the WAL without batching
		}
		m := (*sqlite3.Tsqlite3_io_methods)(cptr(ours))
		*m = *(*sqlite3.Tsqlite3_io_methods)(cptr(f.FpMethods))
		m.FxClose = cfunc(batchClose)
		m.FxRead = cfunc(batchRead)
		m.FxWrite = cfunc(batchWrite)
		m.FxTruncate = cfunc(batchTruncate)
		m.FxSync = cfunc(batchSync)
		m.FxFileSize = cfunc(batchFileSize)
		m.FxFileControl = cfunc(batchFileControl)
		batch.methods[f.FpMethods] = ours
	}
	batch.files[pFile] = &walFile{base: f.FpMethods, commit: -1}
	f.FpMethods = ours
	return rc
}

// walOf returns the state of an open WAL file.
func walOf(pFile uintptr) *walFile {
	batch.mu.Lock()
	defer batch.mu.Unlock()
	return batch.files[pFile]
}

func (w *walFile) methods() *sqlite3.Tsqlite3_io_methods {
	return (*sqlite3.Tsqlite3_io_methods)(cptr(w.base))
}

// flush writes what is gathered.
func (w *walFile) flush(tls *libc.TLS, pFile uintptr) int32 {
	if w.n == 0 {
		return sqlite3.SQLITE_OK
	}
	w.writes++
	rc := call[rwFn](w.methods().FxWrite)(tls, pFile, w.buf, int32(w.n), w.off)
	if rc != sqlite3.SQLITE_OK {
		w.end = min(w.end, w.off) // not written: what comes there is no rewrite
	}
	w.n = 0
	w.commit = -1
	return rc
}

func batchWrite(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	w := walOf(pFile)
	n := int(iAmt)
	if iOfst == 0 || iOfst < w.end || n > batchMax {
		// The header of a new WAL, a rewrite, or too large: written as
		// it comes, after what is gathered.
		if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
			return rc
		}
		w.writes++
		rc := call[rwFn](w.methods().FxWrite)(tls, pFile, zBuf, iAmt, iOfst)
		if e := iOfst + int64(n); iOfst == 0 || e > w.end {
			w.end = e // a new WAL starts over at its header
		}
		return rc
	}
	if w.n > 0 && (iOfst != w.off+int64(w.n) || w.n+n > batchMax) {
		if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	if w.n+n > w.size {
		size := min(max(64<<10, 2*(w.n+n)), batchMax)
		p := sqlite3.Xsqlite3_realloc64(tls, w.buf, uint64(size))
		if p == 0 {
			// Out of memory: written as it comes.
			if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
				return rc
			}
			w.writes++
			rc := call[rwFn](w.methods().FxWrite)(tls, pFile, zBuf, iAmt, iOfst)
			w.end = max(w.end, iOfst+int64(n))
			return rc
		}
		w.buf, w.size = p, size
	}
	if w.n == 0 {
		w.off = iOfst
	}
	copy(cbytes(w.buf+uintptr(w.n), n), cbytes(zBuf, n))
	w.n += n
	w.end = iOfst + int64(n)
	if n == frameHeader {
		// Bytes 4 to 7 of a frame's header: the database's size in pages
		// after a commit, 0 in the other frames.
		if binary.BigEndian.Uint32(cbytes(zBuf+4, 4)) != 0 {
			w.commit = iOfst + frameHeader
		} else {
			w.commit = -1
		}
		return sqlite3.SQLITE_OK
	}
	if iOfst == w.commit {
		return w.flush(tls, pFile) // the transaction's last write
	}
	return sqlite3.SQLITE_OK
}

func batchRead(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	w := walOf(pFile)
	if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[rwFn](w.methods().FxRead)(tls, pFile, zBuf, iAmt, iOfst)
}

func batchTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	w := walOf(pFile)
	if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	w.end = min(w.end, size)
	return call[truncateFn](w.methods().FxTruncate)(tls, pFile, size)
}

func batchSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	w := walOf(pFile)
	if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[syncFn](w.methods().FxSync)(tls, pFile, flags)
}

func batchFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	w := walOf(pFile)
	if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[sizeFn](w.methods().FxFileSize)(tls, pFile, pSize)
}

func batchFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	w := walOf(pFile)
	if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return call[controlFn](w.methods().FxFileControl)(tls, pFile, op, pArg)
}

func batchClose(tls *libc.TLS, pFile uintptr) int32 {
	w := walOf(pFile)
	frc := w.flush(tls, pFile)
	if w.buf != 0 {
		sqlite3.Xsqlite3_free(tls, w.buf)
		w.buf, w.size = 0, 0
	}
	batch.mu.Lock()
	delete(batch.files, pFile)
	batch.mu.Unlock()
	rc := call[closeFn](w.methods().FxClose)(tls, pFile)
	if rc == sqlite3.SQLITE_OK {
		rc = frc
	}
	return rc
}
