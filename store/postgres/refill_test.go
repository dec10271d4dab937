package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// TestStoreRefills: an opened Store's group commit waits for the callers
// its previous transaction answered (groupcommit's Refill, tested there):
// 8 goroutines committing in a loop share one transaction in nearly
// every round. Real time: a round allows a tenth of its transactions
// after the first two to split, and one preemption of a caller can split
// several (it then trails the others alone), so the test passes if one
// of three rounds does (without Refill 47-66% of the transactions carried
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
	var got [][]int
	for attempt := range 3 {
		mu.Lock()
		sizes = nil
		mu.Unlock()
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				for i := range rounds {
					b := &store.Batch{Messages: []store.Message{msg(fmt.Sprintf("r%d-%d-%d", attempt, c, i))}}
					if err := s.Commit(context.Background(), b); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		mu.Lock()
		sz := sizes
		mu.Unlock()
		if len(sz) < 4 {
			t.Fatalf("%d transactions: %v", len(sz), sz)
		}
		full := 0
		for _, n := range sz[2 : len(sz)-1] {
			if n == callers {
				full++
			}
		}
		if 10*full >= 9*(len(sz)-3) {
			return
		}
		got = append(got, sz)
	}
	t.Errorf("in none of three rounds did nine tenths of the transactions after the first two carry all %d callers: %v", callers, got)
}
