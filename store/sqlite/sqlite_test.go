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

func TestConformance(t *testing.T) {
	storetest.Run(t, openIn(t.TempDir(), Config{}))
}

func TestConformanceSync(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite with synchronous=FULL is not short")
	}
	storetest.Run(t, openIn(t.TempDir(), Config{Sync: true}))
}
