package xmpptrack

import (
	"context"
	"encoding/xml"
	"fmt"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationArchiveLookup: the lookup that settles ambiguous messages
// after a resumed restart finds, in the account's own archive on a real
// server, the messages the account sent (by id), and not one it never sent,
// and the query's results never reach the application.
func TestIntegrationArchiveLookup(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		dialTest(t, srv, "bob", Config{})
		var mu sync.Mutex
		results := 0 // archive results handed to the application
		app := xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			var e element
			if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&e); err != nil {
				return err
			}
			if e.child("urn:xmpp:mam:2", "result") != nil {
				mu.Lock()
				results++
				mu.Unlock()
			}
			return nil
		})
		alice := dialTest(t, srv, "alice", Config{Handler: app})
		var held []sm.Stanza
		for i := range 3 {
			id := fmt.Sprintf("%s-%d", NewID(), i)
			tr, err := alice.Send(waitCtx(t), Message{To: srv.JID("bob"), ID: id, Body: "archived"})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the server's ack", func() bool { return tr.State() != tracking.InTransit })
			held = append(held, sm.Stanza{Name: "message", ID: id, To: srv.JID("bob").String(), Sent: time.Now()})
		}
		never := sm.Stanza{Name: "message", ID: NewID(), To: srv.JID("bob").String(), Sent: time.Now()}
		held = append(held, never)
		s, err := alice.Session(waitCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		found, why := alice.searchArchive(ctx, conn{s: s, ctx: ctx}, held)
		for _, m := range held[:3] {
			if !found[m.ID] {
				t.Errorf("%s not found in the archive: %v", m.ID, why[m.ID])
			}
		}
		if found[never.ID] || why[never.ID] != errNotArchived {
			t.Errorf("a message never sent: found %v, reason %v", found[never.ID], why[never.ID])
		}
		mu.Lock()
		if results > 0 {
			t.Errorf("the application got %d archive results", results)
		}
		mu.Unlock()
	})
}
