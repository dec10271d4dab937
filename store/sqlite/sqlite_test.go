package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/storetest"
)

// openIn returns a storetest.Open whose databases live in dir.
func openIn(dir string, cfg Config) storetest.Open {
	return func(t *testing.T, name string) store.Store {
		s, err := OpenConfig(context.Background(), filepath.Join(dir, name+".db"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// The conformance stores keep settled messages (Retention -1): the pruner
// that Open starts would otherwise prune, at a moment of its own, the old
// messages a test commits to prune itself (PruneKeepsCursors failed about
// once in 40 runs under -race: its Prune found nothing left to prune).
func TestConformance(t *testing.T) {
	storetest.Run(t, openIn(t.TempDir(), Config{Retention: -1}))
}

func TestConformanceSync(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite with synchronous=FULL is not short")
	}
	storetest.Run(t, openIn(t.TempDir(), Config{Sync: true, Retention: -1}))
}
