// Package storetest is the conformance suite of package store: every
// implementation runs it from its own tests, and must pass it without skips.
//
//	func TestConformance(t *testing.T) {
//		dir := t.TempDir()
//		storetest.Run(t, func(t *testing.T, name string) store.Store {
//			s, err := mystore.Open(context.Background(), filepath.Join(dir, name))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The suite checks what the store package documents: write-ahead and
// reading back, conditional and monotonic state changes (also with
// concurrent recorders on several handles), the feed's order and its
// never-skipping guarantee under 8 concurrent writers, waking followers,
// retention, stream-management state, the ownership lock, idempotency keys,
// job queues, group commit isolation and bad input.
package storetest
