package storetest

import (
	"context"
	"fmt"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// Post does what a gateway's POST /v1/messages asks of its store, for the
// benchmarks of implementations (called from many goroutines): with keyed,
// the claim of an Idempotency-Key of its own (24 hours), then the
// write-ahead of message id (a 350-byte stanza), as the gateway's client
// commits it.
func Post(ctx context.Context, s store.Store, id string, keyed bool) error {
	if keyed {
		_, ok, err := s.ClaimKey(ctx, store.Key{Scope: "gateway:bench", Name: id, Value: id, Expires: time.Now().Add(24 * time.Hour)})
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %s claimed before", id)
		}
	}
	m := msg(alice, id)
	m.Raw = make([]byte, 350)
	return s.Commit(ctx, &store.Batch{Messages: []store.Message{m}})
}
