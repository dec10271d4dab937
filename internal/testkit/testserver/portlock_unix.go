//go:build unix

package testserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockPort takes the cross-process lock of port: an flock on its file in
// portLockDir. It returns nil and no error if another process (or another
// reservation here) holds it, and an error if the lock cannot be used: the
// directory is world-writable and sticky (01777), so that every user's runs
// share it, and is refused if it is a symbolic link or belongs to neither
// root nor this user; lock files are opened without following symbolic
// links, read-only once they exist (flock needs no more), and created
// readable by everyone.
func lockPort(port int) (*os.File, error) {
	if err := os.Mkdir(portLockDir, 0o700); err == nil {
		if err := os.Chmod(portLockDir, 0o777|os.ModeSticky); err != nil {
			return nil, fmt.Errorf("testserver: port locks: %w", err)
		}
	}
	st, err := os.Lstat(portLockDir)
	if err != nil {
		return nil, fmt.Errorf("testserver: port locks: %w", err)
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return nil, fmt.Errorf("testserver: port locks: %s is not a directory", portLockDir)
	case sys == nil || sys.Uid != 0 && int(sys.Uid) != os.Geteuid():
		return nil, fmt.Errorf("testserver: port locks: %s belongs to another user", portLockDir)
	case st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0:
		// Made by an older harness under a umask: its owner opens it up.
		if err := os.Chmod(portLockDir, 0o777|os.ModeSticky); err != nil {
			return nil, fmt.Errorf("testserver: port locks: %s is not world-writable and sticky: %w", portLockDir, err)
		}
	}
	name := filepath.Join(portLockDir, strconv.Itoa(port))
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(name, os.O_RDONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o444)
		if errors.Is(err, os.ErrExist) { // created meanwhile by another process
			f, err = os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		} else if err == nil {
			err = f.Chmod(0o444) // whatever the umask
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("testserver: port lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("testserver: port lock %s: %w", name, err)
	}
	return f, nil
}
