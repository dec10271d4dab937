package xmpptrack

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
)

// refusingStore refuses for good (store.ErrInvalid) every batch that holds
// a stream-management state, and takes every other one.
type refusingStore struct{ batchStore }

func (r *refusingStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Sessions) > 0 {
		return store.ErrInvalid
	}
	return r.batchStore.Commit(ctx, b)
}

// hookHandler is a slog.Handler that runs f on each record, on the
// goroutine that logs it.
type hookHandler struct{ f func(slog.Record) }

func (h hookHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error { h.f(r); return nil }
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h hookHandler) WithGroup(string) slog.Handler                 { return h }

// TestRecorderRefusedSessionNotSaved: a stream-management state the store
// refused never raises the bound of the acks we send (sm.Config.Handled),
// also when a message written ahead meanwhile succeeds, which clears the
// store's last failure (Stats.StoreErr) between the refusal and the
// recorder's look at it.
func TestRecorderRefusedSessionNotSaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rs := &refusingStore{}
		var d *durable
		raced := false
		log := slog.New(hookHandler{func(r slog.Record) {
			// Logged by the recorder right after the refusal: a concurrent
			// Send's write-ahead lands now.
			if strings.Contains(r.Message, "not recorded") && !raced {
				raced = true
				err := d.writeAhead(context.Background(), "m1", Message{To: jid.MustParse("b@example.org"), Body: "hi"}, nil, time.Time{}, &hold{})
				if err != nil {
					t.Errorf("write-ahead: %v", err)
				}
			}
		}})
		var err error
		d, err = openDurable(context.Background(), rs, jid.MustParse("a@example.org/r"), log)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		c := &Client{sm: sm.New(sm.Config{})}
		// Five stanzas received and finished on stream s1, none acknowledged.
		if err := c.sm.Restore(sm.Resumption{ID: "s1", JID: jid.MustParse("a@example.org/r"), Handled: 5}, nil); err != nil {
			t.Fatal(err)
		}
		d.client.Store(c)
		d.saveNow()
		synctest.Wait()
		if !raced {
			t.Fatal("the store did not refuse the stream-management state")
		}
		if s := d.saved.Load(); s != nil {
			t.Errorf("refused stream-management state taken as saved: %+v", *s)
		}
		if h := d.handled(nil)(5); h != 0 {
			t.Errorf("ack bound %d after the store refused the count; want 0 (nothing saved for the stream)", h)
		}
	})
}
