package sqlite

import (
	"errors"
	"fmt"
	"io"
	"os"
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
