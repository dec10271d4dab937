package sqlite

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"

	"github.com/xmpptrack/xmpptrack/store"
)

// lease is an ownership lock: a lock on one byte of path-lock, held through
// its own open file.
type lease struct {
	s     *Store
	owner store.Instance
	f     *os.File // nil where the system offers no such locks
	lost  chan struct{}
	once  sync.Once
	err   error
}

func (l *lease) Owner() store.Instance { return l.owner }
func (l *lease) Lost() <-chan struct{} { return l.lost } // a file lock is never lost

// Release implements store.Lease.
func (l *lease) Release() error {
	l.s.mu.Lock()
	if l.s.leases[l.owner] == l {
		delete(l.s.leases, l.owner)
	}
	l.s.mu.Unlock()
	return l.release()
}

func (l *lease) release() error {
	l.once.Do(func() {
		if l.f != nil {
			l.err = l.f.Close() // closing the file releases its lock
		}
	})
	return l.err
}

// offset is the byte of path-lock that stands for owner.
func offset(owner store.Instance) int64 {
	h := fnv.New64a()
	h.Write([]byte(owner.Account))
	h.Write([]byte{0})
	h.Write([]byte(owner.Resource))
	return int64(h.Sum64() >> 2) // below 2^62: a valid file offset
}

// Lock implements store.Store.
func (s *Store) Lock(ctx context.Context, owner store.Instance) (store.Lease, error) {
	if err := owner.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	if _, ok := s.leases[owner]; ok {
		return nil, &store.LockedError{Owner: owner, By: "another client of this store"}
	}
	f, err := lockFile(s.lockPath, offset(owner))
	if errors.Is(err, store.ErrLocked) {
		return nil, &store.LockedError{Owner: owner, By: "another process (or another sqlite.Store on the same file)"}
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: %v: %w", owner, err)
	}
	l := &lease{s: s, owner: owner, f: f, lost: make(chan struct{})}
	s.leases[owner] = l
	return l, nil
}
