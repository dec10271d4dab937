package xmpptrack

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/testkit/sqlitefloor"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// BenchmarkDurablePath measures what Config.Store adds to one message of
// a sender before any database work, with a store whose Commit writes
// nothing (sqlitefloor's Discard): the write-ahead (the stored stanza and
// its batch), the sequence number handed to the recorder, and the
// registry's hook as its three state changes are made (made:
// DELIVERED_TO_SERVER, DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT with
// their evidence), with the recorder committing them on its own goroutine. No connection: the wake-ups of the stream's
// goroutines are not in it.
func BenchmarkDurablePath(b *testing.B) {
	ctx := context.Background()
	st, err := sqlitefloor.Open(ctx, filepath.Join(b.TempDir(), "discard.db"), sqlitefloor.Config{Discard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	d, err := openDurable(ctx, st, testJID, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.close()
	made, _ := d.hooks(nil)
	reg := registry.New(registry.Config{MaxPending: -1, Window: -1})
	defer reg.Close()
	to := jid.MustParse("bob@example.org")
	from := jid.MustParse("bob@example.org/pc")
	m := Message{To: to, Body: "hello bob, message 1234 of the benchmark", Type: "chat"}
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	seq := uint32(0)
	for b.Loop() {
		tr, err := reg.TryTrack(to.String(), "", registry.TrackOptions{})
		if err != nil {
			b.Fatal(err)
		}
		id := tr.ID()
		if err := d.writeAhead(ctx, id, m, nil, deadline, &hold{}); err != nil {
			b.Fatal(err)
		}
		seq++
		d.onWritten(sm.Stanza{Seq: seq, Name: "message", ID: id, To: to.String()})
		made(tr, tracking.InTransit, tracking.DeliveredToServer, nil)
		resp := &tracking.Response{From: from, ID: "r1"}
		made(tr, tracking.DeliveredToServer, tracking.DeliveredToRecipient, resp)
		made(tr, tracking.DeliveredToRecipient, tracking.SeenByRecipient, resp)
		reg.Lost(to.String(), id)
	}
}
