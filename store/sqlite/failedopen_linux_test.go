package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestFailedOpenKeepsFiles: an Open that fails removes no file. Through a
// dangling symlink, removing "the empty file this Open created" removed the
// user's symlink instead (and, with another Open of the same new path under
// way, a file another store of the process held its lock on).
func TestFailedOpenKeepsFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target.db")
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s, err := Open(ctx, link); err == nil {
		s.Close()
		t.Fatal("Open with an ended ctx succeeded")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Fatalf("the symlink is gone after a failed Open: %v", err)
	}
	// The empty file left behind is a valid new store.
	s, err := Open(t.Context(), link)
	if err != nil {
		t.Fatalf("Open after the failed one: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
