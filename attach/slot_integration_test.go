package attach

import (
	"context"
	"errors"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
	"mellium.im/xmpp/upload"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// TestIntegrationSlotRefused: the servers' own refusals decode into
// *SlotError: a file over the limit (asked for without the check that
// Upload makes first) matches ErrTooLarge and names the limit.
func TestIntegrationSlotRefused(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			const limit = 1 << 20
			srv := testserver.Start(t, kind, testserver.Options{Accounts: []string{"alice"}, HTTPUpload: true, UploadLimit: limit, NoMAM: true})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			c, err := xmpptrack.Dial(ctx, srv.JID("alice"), srv.Password("alice"), &xmpptrack.Config{Addr: srv.Addr(), TLSConfig: srv.TLSConfig()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			q := sessionQuery(c)
			_, err = requestSlot(ctx, q, jid.MustParse(srv.UploadDomain()), upload.File{Name: "big.bin", Size: limit + 1, Type: "application/octet-stream"})
			var se *SlotError
			if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) || !errors.Is(err, xstanza.Error{Condition: xstanza.NotAcceptable}) {
				t.Fatalf("err = %v, want a file-too-large *SlotError", err)
			}
			if se.MaxSize != limit {
				t.Errorf("MaxSize %d, want %d", se.MaxSize, limit)
			}
			// Within the limit: a slot with both URLs.
			slot, err := requestSlot(ctx, q, jid.MustParse(srv.UploadDomain()), upload.File{Name: "ok.bin", Size: limit, Type: "application/octet-stream"})
			if err != nil || slot.PutURL == nil || slot.GetURL == nil {
				t.Fatalf("slot %+v, %v", slot, err)
			}
		})
	}
}
