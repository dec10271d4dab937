package postgres

import (
	"context"
	"testing"
)

// TestStoreRefills: an opened Store's group commit waits for the callers
// its previous transaction answered (groupcommit's Refill, tested there):
// a transaction's fixed cost is paid once per round of concurrent senders.
func TestStoreRefills(t *testing.T) {
	s, err := OpenConfig(context.Background(), database(t, "refills"), Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.group.Refilling() {
		t.Error("the store's group commit does not refill")
	}
}
