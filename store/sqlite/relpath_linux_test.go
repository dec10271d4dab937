package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
)

// TestRelativeAndAbsoluteNames: one file under its relative, absolute and
// ".." names in one process is one store.
func TestRelativeAndAbsoluteNames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	t.Chdir(dir)
	s, err := Open(ctx, "s.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
	for _, name := range []string{filepath.Join(dir, "s.db"), "./s.db", "sub/../s.db", filepath.Join(dir, "sub", "..", "s.db"), dir + "//s.db"} {
		s2, err := Open(ctx, name)
		if err != nil {
			t.Errorf("Open(%q) while Open(\"s.db\") has it: %v", name, err)
			continue
		}
		if _, err := s2.Message(ctx, "a"); err != nil {
			t.Errorf("%q reads: %v", name, err)
		}
		s2.Close()
	}
	commitT(t, s, &store.Batch{Messages: []store.Message{message("b")}})
}

// TestOwnerLockAfterChdir: the ownership locks stay in the path-lock next to
// the file after the process changed its working directory (they were in
// "s.db-lock" of the new one, a relative first name resolved at Lock time).
func TestOwnerLockAfterChdir(t *testing.T) {
	ctx := context.Background()
	_, dir, other := openRelative(t)                 // the first store, by its relative name
	s2, err := Open(ctx, filepath.Join(dir, "s.db")) // absolute name, second store
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	os.Chdir(other)
	l, err := s2.Lock(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := os.Stat(filepath.Join(other, "s.db-lock")); err == nil {
		t.Errorf("s2 (opened as %s) took its ownership lock in %s", filepath.Join(dir, "s.db"), filepath.Join(other, "s.db-lock"))
	}
	// Another process using the absolute name is not kept out of owner.
	f, err := lockFile(filepath.Join(dir, "s.db-lock"), offset(owner))
	if !errors.Is(err, store.ErrLocked) {
		if f != nil {
			f.Close()
		}
		t.Errorf("owner's byte in the real path-lock while s2 holds owner: %v, want ErrLocked", err)
	}
}

// TestReadAfterChdir: the store's lazily opened connections (readers,
// checkpointer) open its file, not "s.db" in a new working directory.
func TestReadAfterChdir(t *testing.T) {
	ctx := context.Background()
	s, _, other := openRelative(t)
	commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
	os.Chdir(other)
	if _, err := s.Message(ctx, "a"); err != nil {
		t.Errorf("read after chdir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "s.db")); err == nil {
		t.Errorf("a file s.db appeared in the new cwd")
	}
}

// openRelative opens "s.db" in a new working directory dir, and returns
// another directory to change to.
func openRelative(t *testing.T) (s *Store, dir, other string) {
	dir, other = t.TempDir(), t.TempDir()
	t.Chdir(dir)
	s, err := Open(t.Context(), "s.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir, other
}
