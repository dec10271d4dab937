package sqlite

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/xmpptrack/xmpptrack/store"
)

// fOFDSetlk is F_OFD_SETLK: a lock owned by the open file description, so
// that two opens in one process conflict, and closing it releases it.
const fOFDSetlk = 37

// lockFile opens path and takes a write lock on the byte at off.
func lockFile(path string, off int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: off, Len: 1}
	err = syscall.FcntlFlock(f.Fd(), fOFDSetlk, &lk)
	if err == nil {
		return f, nil
	}
	f.Close()
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("%w (by another process or store)", store.ErrLocked)
	}
	return nil, fmt.Errorf("lock %s: %w", path, err)
}

// exclusiveVFS is SQLite's file system layer of a store that takes its file
// for its process (see "One process" in doc.go).
const exclusiveVFS = "unix-excl"

// procOffset is the byte of path-lock that stands for the processes that
// have the file open: owners' bytes (offset) are below 2^62.
const procOffset = 1 << 62

// pendingByte is SQLite's PENDING byte of a database file: every SQLite
// connection with ordinary locking takes a read lock on it before it reads
// the file; SQLite's "unix-excl" layer never locks it.
const pendingByte = 0x40000000

// procLocks are the locks of this process's stores, one set per database
// file (by its device and inode, so that every name of the file, a symlink
// or a hard link, shares one), shared by the process's stores on it.
// They are OFD locks, owned by their own open files: unlike SQLite's POSIX
// locks, which the kernel drops at any close of any descriptor of the
// database file in the process, nothing but their own close releases them.
// A lock on procOffset of path-lock (of the name the first store opened),
// a write lock when the stores have the file to themselves (not
// Config.Shared), a read lock when they share it, keeps out the other
// processes of this package; a write lock on the database file's PENDING
// byte (not Config.Shared) keeps out every other SQLite connection, under
// any name of the file. All stores of a process on one file, under any of
// its names, have the same Config.Shared.
var procLocks = struct {
	sync.Mutex
	m map[fileKey]*procLock
}{m: map[fileKey]*procLock{}}

// fileKey is the identity of a database file.
type fileKey struct{ dev, ino uint64 }

func keyOf(st *syscall.Stat_t) fileKey { return fileKey{uint64(st.Dev), st.Ino} }

type procLock struct {
	f *os.File // path-lock of the first store's name
	// db is the database file, holding its PENDING byte unless shared. It
	// stays open until the last store on the file is closed: its close
	// drops every POSIX lock of the process on the file, SQLite's included.
	db *os.File
	// more are descriptors of the database file that other Opens made
	// while the file was renamed or replaced under their name; closed with
	// db, for the same reason.
	more   []*os.File
	n      int // the stores holding them
	shared bool
	// name is the file's name with symlinks resolved, as SQLite resolves
	// it: its WAL is name-wal.
	name string
}

// realName is path with its symlinks resolved, as SQLite resolves it.
func realName(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	if p, err := filepath.Abs(path); err == nil {
		path = p
	}
	return path
}

// processLock takes this process's locks on the database file at path for
// one more store (shared: with Config.Shared) and returns their release;
// another process's conflicting lock refuses it with store.ErrLocked, and
// so does a store of this process on the same file, under any of its
// names, with the other Config.Shared. lockPath is the path-lock of the
// process's stores on the file (that of the name the first of them
// opened), which holds their ownership locks.
func processLock(path string, shared bool) (release func(), lockPath string, err error) {
	f, err := os.OpenFile(path+"-lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	procLocks.Lock()
	defer procLocks.Unlock()
	// Look the file up by name first: opening a descriptor of a file the
	// process's stores have open and closing it would drop their SQLite
	// locks.
	var st syscall.Stat_t
	var l *procLock
	name := "" // path's resolved name, once: a symlink may be repointed meanwhile
	key := fileKey{}
	if err := syscall.Stat(path, &st); err == nil {
		key = keyOf(&st)
		l = procLocks.m[key]
	}
	if l == nil {
		db, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644) // SQLite's mode, less the umask
		if err != nil && shared && errors.Is(err, os.ErrPermission) {
			db, err = os.Open(path) // SQLite opens such a file read-only
		}
		if err != nil {
			f.Close()
			return nil, "", fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		if err := syscall.Fstat(int(db.Fd()), &st); err != nil {
			db.Close()
			f.Close()
			return nil, "", fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		key = keyOf(&st)
		if l = procLocks.m[key]; l != nil {
			// path now names a file the process's stores have open (it was
			// renamed or replaced since the Stat): keep db (see more).
			l.more = append(l.more, db)
		} else {
			typ := int16(syscall.F_WRLCK)
			if shared {
				typ = syscall.F_RDLCK
			}
			if err := setLock(f, typ, procOffset); err != nil {
				db.Close() // no store of this process has the file open
				f.Close()
				return nil, "", lockedBy(path, err)
			}
			if !shared {
				if err := setLock(db, syscall.F_WRLCK, pendingByte); err != nil {
					db.Close()
					f.Close()
					return nil, "", lockedBy(path, err)
				}
			}
			name = realName(path)
			l = &procLock{f: f, db: db, shared: shared, name: name}
			procLocks.m[key] = l
		}
	}
	if l.f != f {
		f.Close() // an OFD lock is not dropped by the close of another open
	}
	if l.shared != shared {
		return nil, "", fmt.Errorf("sqlite: %s is open in this process with Config.Shared %v, under this name or another (all its stores on a file share it or none): %w", path, l.shared, store.ErrLocked)
	}
	if name == "" {
		name = realName(path)
	}
	if name != l.name {
		// A hard link (or a rename): SQLite would keep another WAL for it.
		return nil, "", fmt.Errorf("sqlite: %s is open in this process as %s, another name of it (a hard link, or its name before a rename): SQLite keeps a WAL per name, symlinks resolved: %w", path, l.name, store.ErrLocked)
	}
	l.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			procLocks.Lock()
			defer procLocks.Unlock()
			if l.n--; l.n == 0 {
				delete(procLocks.m, key)
				// SQLite's connections are closed: the POSIX locks these
				// closes drop are none of theirs.
				for _, db := range l.more {
					db.Close()
				}
				l.db.Close()
				l.f.Close()
			}
		})
	}, l.f.Name(), nil
}

func setLock(f *os.File, typ int16, off int64) error {
	lk := syscall.Flock_t{Type: typ, Whence: io.SeekStart, Start: off, Len: 1}
	return syscall.FcntlFlock(f.Fd(), fOFDSetlk, &lk)
}

// lockedBy is the error of a conflicting lock.
func lockedBy(path string, err error) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("sqlite: %s is open in another process or program (a store takes its file for one process unless Config.Shared, and one with Config.Shared shares it only with others that have it): %w", path, store.ErrLocked)
	}
	return fmt.Errorf("sqlite: lock %s: %w", path, err)
}
