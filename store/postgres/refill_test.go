package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestQueueRefills: the store's queue waits for the callers its previous
// transaction answered, so that 8 callers committing in a loop share one
// transaction per round once the first two are past (without Refill some
// rounds split into groups that take turns).
func TestQueueRefills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		life, stop := context.WithCancel(context.Background())
		defer stop()
		q := newQueue(life)
		var sizes []int
		go q.Run(func(group []*groupcommit.Request) {
			sizes = append(sizes, len(group))
			time.Sleep(time.Millisecond) // the transaction
			for _, r := range group {
				r.Answer(nil)
			}
		})
		const callers, rounds = 8, 20
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				for i := range rounds {
					b := &store.Batch{Changes: []store.Change{{ID: fmt.Sprint(c, "-", i), State: tracking.DeliveredToServer}}}
					if err := q.Commit(context.Background(), b); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		for i, n := range sizes[2 : len(sizes)-1] {
			if n != callers {
				t.Fatalf("transaction %d carried %d of the %d callers: %v", i+2, n, callers, sizes)
			}
		}
	})
}
