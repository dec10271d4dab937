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

// procLocks are the locks on procOffset that this process holds, one per
// file (by the identity of its path-lock), shared by the process's stores
// on it. The lock is an OFD lock, owned by its own open file: unlike
// SQLite's POSIX locks, which the kernel drops at any close of any
// descriptor of the database file in the process, nothing but its own
// close releases it. It is a write lock while a store of the process has
// the file to itself (not Config.Shared), a read lock while all of them
// share it: a process's stores without Config.Shared keep every other
// process out, stores with it keep out only those.
var procLocks = struct {
	sync.Mutex
	m map[fileKey]*procLock
}{m: map[fileKey]*procLock{}}

type fileKey struct{ dev, ino uint64 }

type procLock struct {
	f    *os.File
	n    int // the stores holding it
	excl int // of them, those without Config.Shared
}

// processLock takes this process's lock on the file at path for one more
// store (shared: with Config.Shared) and returns its release; another
// process's conflicting lock refuses it with store.ErrLocked.
func processLock(path string, shared bool) (release func(), err error) {
	f, err := os.OpenFile(path+"-lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	key := fileKey{uint64(st.Dev), st.Ino}
	procLocks.Lock()
	defer procLocks.Unlock()
	l := procLocks.m[key]
	if l != nil {
		f.Close() // an OFD lock is not dropped by the close of another open
		if !shared && l.excl == 0 {
			if err := setProcLock(l.f, syscall.F_WRLCK); err != nil {
				return nil, lockedBy(path, err)
			}
		}
	} else {
		typ := int16(syscall.F_WRLCK)
		if shared {
			typ = syscall.F_RDLCK
		}
		if err := setProcLock(f, typ); err != nil {
			f.Close()
			return nil, lockedBy(path, err)
		}
		l = &procLock{f: f}
		procLocks.m[key] = l
	}
	l.n++
	if !shared {
		l.excl++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			procLocks.Lock()
			defer procLocks.Unlock()
			l.n--
			if !shared {
				l.excl--
			}
			switch {
			case l.n == 0:
				delete(procLocks.m, key)
				l.f.Close()
			case l.excl == 0 && !shared:
				setProcLock(l.f, syscall.F_RDLCK) // a downgrade never conflicts
			}
		})
	}, nil
}

func setProcLock(f *os.File, typ int16) error {
	lk := syscall.Flock_t{Type: typ, Whence: io.SeekStart, Start: procOffset, Len: 1}
	return syscall.FcntlFlock(f.Fd(), fOFDSetlk, &lk)
}

// lockedBy is the error of a conflicting process lock.
func lockedBy(path string, err error) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("sqlite: %s is open in another process (a store takes its file for one process unless Config.Shared, and one with Config.Shared shares it only with others that have it): %w", path, store.ErrLocked)
	}
	return fmt.Errorf("sqlite: lock %s-lock: %w", path, err)
}
