package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
)

// TestStoreRefills: an opened Store's group commit waits for the callers
// its previous transaction answered (groupcommit's Refill, tested there):
// 8 goroutines committing in a loop share one transaction in nearly
// every round. Real time: the check allows a tenth of the rounds
// after the first two to split (without Refill 47-66% of them carried
// all 8 in three runs).
func TestStoreRefills(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	var s *Store
	cfg := Config{Retention: -1, try: func(group []*groupcommit.Request, live []int) ([]result, map[string]bool, error) {
		mu.Lock()
		sizes = append(sizes, len(live))
		mu.Unlock()
		return s.tryGroup(group, live)
	}}
	s, err := OpenConfig(context.Background(), database(t, "refills"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const callers, rounds = 8, 30
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range rounds {
				b := &store.Batch{Messages: []store.Message{msg(fmt.Sprintf("r%d-%d", c, i))}}
				if err := s.Commit(context.Background(), b); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) < 4 {
		t.Fatalf("%d transactions: %v", len(sizes), sizes)
	}
	full := 0
	for _, n := range sizes[2 : len(sizes)-1] {
		if n == callers {
			full++
		}
	}
	if 10*full < 9*(len(sizes)-3) {
		t.Errorf("%d of %d transactions after the first two carried all %d callers, want nine tenths: %v", full, len(sizes)-3, callers, sizes)
	}
}
