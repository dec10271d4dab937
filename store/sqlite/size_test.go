package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestSizePerSettledMessage measures the disk a settled message costs, its
// history included, and holds it to at most 1 KiB: 4,000 messages of a
// realistic size (a 16-character id, a 380-byte stanza) each settled
// through DELIVERED_TO_SERVER, DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT
// with the recipient's full JID as evidence, in two rounds, so that the
// second round reuses the space the first one freed, as a store in steady
// state does.
func TestSizePerSettledMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 8,000 messages")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "size.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("disk usage alert on host db-7: 91% ", 4)
	const n = 4000
	for round := range 2 {
		for i := 0; i < n; i += 100 {
			b := &store.Batch{}
			for j := i; j < i+100; j++ {
				id := fmt.Sprintf("r%dAbCdEfGhIj%04d", round, j)
				raw := `<message xmlns="jabber:client" to="oncall@example.org" type="chat" id="` + id +
					`"><body>` + body + `</body><request xmlns="urn:xmpp:receipts"/><markable xmlns="urn:xmpp:chat-markers:0"/>` +
					`<origin-id xmlns="urn:xmpp:sid:0" id="` + id + `"/></message>`
				b.Messages = append(b.Messages, store.Message{ID: id, Owner: store.Instance{Account: "alertbot@example.org", Resource: "prod-1"},
					To: "oncall@example.org", Raw: []byte(raw)})
				ev := store.Evidence{From: "oncall@example.org/phone-8f3a"}
				b.Changes = append(b.Changes,
					store.Change{ID: id, State: tracking.DeliveredToServer},
					store.Change{ID: id, State: tracking.DeliveredToRecipient, Evidence: ev},
					store.Change{ID: id, State: tracking.SeenByRecipient, Evidence: ev})
			}
			if err := s.Commit(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if round == 0 {
			// Retention removes the first round; the second reuses its pages.
			if _, err := s.w.ExecContext(ctx, `UPDATE messages SET updated = 1`); err != nil {
				t.Fatal(err)
			}
			if k, err := s.Prune(ctx, fromMicros(2)); err != nil || k != n {
				t.Fatalf("pruned %d, %v", k, err)
			}
		}
	}
	var pages, free, size int64
	s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages)
	s.w.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free)
	s.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&size)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	perMessage := float64(fi.Size()) / n
	t.Logf("file %d bytes for %d settled messages: %.0f bytes each (pages in use: %.0f bytes each)",
		fi.Size(), n, perMessage, float64((pages-free)*size)/n)
	if perMessage > 1024 {
		t.Errorf("%.0f bytes per settled message, want at most 1024", perMessage)
	}
}
