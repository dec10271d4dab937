package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// testKeysAcrossClose claims keys from many goroutines while the store
// closes, one claim in four with a context cancelled before it starts:
// every call returns; a claim told claimed=true stored its key (read back
// after opening the store again); one that failed with ErrClosed or its
// context's error, or with any error but ErrOutcomeUnknown, stored
// nothing; ClaimKey after Close fails with ErrClosed.
func testKeysAcrossClose(t *testing.T, open Open) {
	s, name := fresh(t, open)
	ctx := ctxT(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	const n = 200
	type out struct {
		ok  bool
		err error
	}
	outs := make([]out, n)
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	for i := range n {
		c := ctx
		if i%4 == 0 {
			c = cancelled
		}
		wg.Go(func() {
			_, ok, err := s.ClaimKey(c, store.Key{Scope: "c", Name: fmt.Sprint("k", i), Value: "v", Expires: exp})
			outs[i] = out{ok, err}
		})
		if i == n/2 {
			wg.Go(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
	}
	wg.Wait()
	if _, _, err := s.ClaimKey(ctx, store.Key{Scope: "c", Name: "after", Value: "v", Expires: exp}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ClaimKey after Close: %v, want ErrClosed", err)
	}
	again := opened(t, open, name)
	defer again.Close()
	for i, o := range outs {
		if i%4 == 0 && o.err == nil {
			t.Errorf("claim %d with a cancelled context: no error", i)
		}
		if errors.Is(o.err, store.ErrOutcomeUnknown) {
			continue
		}
		v, found, err := again.Key(ctx, "c", fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		if o.err == nil && (!o.ok || !found || v != "v") {
			t.Errorf("claim %d: claimed %v, stored %v %q; want claimed and stored", i, o.ok, found, v)
		}
		if o.err != nil && found {
			t.Errorf("claim %d failed (%v) but stored its key", i, o.err)
		}
	}
}
