package login

import (
	"errors"
	"syscall"
	"testing"
)

// fakeRawConn runs Control's function on fd, or fails with err.
type fakeRawConn struct {
	fd  uintptr
	err error
}

func (f fakeRawConn) Control(fn func(uintptr)) error {
	if f.err != nil {
		return f.err
	}
	fn(f.fd)
	return nil
}
func (fakeRawConn) Read(func(uintptr) bool) error  { return errors.ErrUnsupported }
func (fakeRawConn) Write(func(uintptr) bool) error { return errors.ErrUnsupported }

// TestUserTimeoutBestEffort: a socket that refuses TCP_USER_TIMEOUT still
// connects (the option is a hardening only), and an error of Control itself
// ends the dial.
func TestUserTimeoutBestEffort(t *testing.T) {
	// An fd that is no socket: setsockopt fails (EBADF or ENOTSOCK).
	if err := setUserTimeout("tcp", "127.0.0.1:5222", fakeRawConn{fd: ^uintptr(0)}); err != nil {
		t.Errorf("setsockopt's failure ended the dial: %v", err)
	}
	gone := errors.New("socket gone")
	if err := setUserTimeout("tcp", "127.0.0.1:5222", fakeRawConn{err: gone}); !errors.Is(err, gone) {
		t.Errorf("Control's error: got %v, want %v", err, gone)
	}
}

var _ syscall.RawConn = fakeRawConn{}
