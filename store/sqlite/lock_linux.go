package sqlite

import (
	"errors"
	"fmt"
	"io"
	"os"
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

// procLocks are the locks of this process's stores, one set per file (by
// the identity of its path-lock), shared by the process's stores on it.
// They are OFD locks, owned by their own open files: unlike SQLite's POSIX
// locks, which the kernel drops at any close of any descriptor of the
// database file in the process, nothing but their own close releases them.
// A lock on procOffset of path-lock, a write lock when the stores have the
// file to themselves (not Config.Shared), a read lock when they share it,
// keeps out the other processes of this package; a write lock on the
// database file's PENDING byte (not Config.Shared) keeps out every other
// SQLite connection, under any name of the file. All stores of a process
// on one file have the same Config.Shared.
var procLocks = struct {
	sync.Mutex
	m map[fileKey]*procLock
}{m: map[fileKey]*procLock{}}

type fileKey struct{ dev, ino uint64 }

type procLock struct {
	f      *os.File // path-lock
	db     *os.File // the database file, holding its PENDING byte; nil if shared
	n      int      // the stores holding them
	shared bool
}

// processLock takes this process's locks on the file at path for one more
// store (shared: with Config.Shared) and returns their release; another
// process's conflicting lock refuses it with store.ErrLocked, and so does
// a store of this process with the other Config.Shared. created reports
// that it created path-lock.
func processLock(path string, shared bool) (release func(), created bool, err error) {
	if _, err := os.Stat(path + "-lock"); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	f, err := os.OpenFile(path+"-lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, created, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	key := fileKey{uint64(st.Dev), st.Ino}
	procLocks.Lock()
	defer procLocks.Unlock()
	l := procLocks.m[key]
	if l != nil {
		f.Close() // an OFD lock is not dropped by the close of another open
		if l.shared != shared {
			return nil, created, fmt.Errorf("sqlite: %s is open in this process with Config.Shared %v (all its stores on a file share it or none): %w", path, l.shared, store.ErrLocked)
		}
	} else {
		typ := int16(syscall.F_WRLCK)
		if shared {
			typ = syscall.F_RDLCK
		}
		if err := setLock(f, typ, procOffset); err != nil {
			f.Close()
			return nil, created, lockedBy(path, err)
		}
		l = &procLock{f: f, shared: shared}
		if !shared {
			db, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644) // SQLite's mode, less the umask
			if err != nil {
				f.Close()
				return nil, created, fmt.Errorf("sqlite: open %s: %w", path, err)
			}
			if err := setLock(db, syscall.F_WRLCK, pendingByte); err != nil {
				db.Close()
				f.Close()
				return nil, created, lockedBy(path, err)
			}
			l.db = db
		}
		procLocks.m[key] = l
	}
	l.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			procLocks.Lock()
			defer procLocks.Unlock()
			if l.n--; l.n == 0 {
				delete(procLocks.m, key)
				if l.db != nil {
					// SQLite's connections are closed: the POSIX locks
					// this close drops are none of theirs.
					l.db.Close()
				}
				l.f.Close()
			}
		})
	}, created, nil
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
