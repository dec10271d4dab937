package xmpptrack

import (
	"encoding/xml"
	"errors"
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestPrivateRetryAfterRoomChanged: a private message to an occupant whose
// write-ahead stays in doubt (ErrRecordUncertain) is retried after the
// room was left, or joined, since the failed call. The retry is the same
// message whatever the room did: written as the first call wrote it (with
// the muc#user <x/> when the room was joined then), it adopts the record
// that landed, or gets the tracker of the message the client found stored
// and sent; the record and the wire carry the first call's <x/>. Another
// message under the id is still refused. Before, the <x/> was decided from
// the room at each call, and the retry was refused as ErrDuplicateID while
// the client sent the stored stanza.
func TestPrivateRetryAfterRoomChanged(t *testing.T) {
	room := jid.MustParse("ops@conference.example.org")
	dave := jid.MustParse("ops@conference.example.org/dave")
	for _, joined := range []bool{true, false} {
		for _, adopted := range []bool{true, false} {
			t.Run(fmt.Sprintf("joined=%v/adopted=%v", joined, adopted), func(t *testing.T) {
				want := 0
				if joined {
					want = 1
				}
				ls := &lateStore{Store: openStore(t), late: true, stuck: true}
				c, pc := newPeer(t, Config{Store: ls})
				leave := func() {}
				if joined {
					leave = c.Observe(roomObserver(room, ""))
				}
				m := Message{To: dave, ID: "pm", Body: "psst"}
				var sent *tracking.MessageTracker // by the client, before the retry
				if adopted {
					noResolver(c)
					if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) {
						t.Fatalf("Send whose write-ahead stayed in doubt: %v; want ErrRecordUncertain", err)
					}
					ls.mu.Lock()
					ls.stuck = false // the retry's commit lands the first
					ls.mu.Unlock()
				} else {
					var w element
					sent, w = sentLaterWire(t, c, pc, ls, m)
					if mucUsers(w) != want {
						t.Fatalf("the client found the message stored and sent %s, want %d muc#user <x/>", w.String(), want)
					}
				}
				if joined {
					leave()
				} else {
					c.Observe(roomObserver(room, ""))
				}
				if !adopted {
					other := m
					other.Body = "something else"
					if tr, err := c.Send(waitCtx(t), other); tr != nil || !errors.Is(err, tracking.ErrDuplicateID) {
						t.Fatalf("another message under the id: %v, %v; want ErrDuplicateID", tr, err)
					}
				}
				tr, err := c.Send(waitCtx(t), m)
				if err != nil || tr == nil || (sent != nil && tr != sent) {
					t.Fatalf("retry after the room changed: %v, %v; want the message's tracker", tr, err)
				}
				if adopted {
					if w := pc.nextMessage(t); w.attr("id") != "pm" || mucUsers(w) != want {
						t.Fatalf("the server got %s, want the message with %d muc#user <x/>", w.String(), want)
					}
				}
				rec, err := ls.Store.Message(waitCtx(t), "pm")
				var w element
				if err == nil {
					err = xml.Unmarshal(rec.Raw, &w)
				}
				if err != nil || mucUsers(w) != want {
					t.Fatalf("the record: %s, %v; want %d muc#user <x/>", rec.Raw, err, want)
				}
			})
		}
	}
}

// TestPrivateMessageRestart: a private message to an occupant that the
// server never acknowledged, sent again by the next process from the
// store, carries the muc#user <x/> it was written ahead with, though the
// next process has not joined the room: the store keeps the stanza as
// written.
func TestPrivateMessageRestart(t *testing.T) {
	st := openStore(t)
	srv := newPeerServer(t)
	c1 := dialPeer(t, srv, Config{Store: st})
	pc := srv.next(t)
	c1.Observe(roomObserver(jid.MustParse("ops@conference.example.org"), ""))
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	tr, err := c1.Send(waitCtx(t), Message{To: jid.MustParse("ops@conference.example.org/dave"), Body: "psst"})
	if err != nil {
		t.Fatal(err)
	}
	if w := pc.nextMessage(t); mucUsers(w) != 1 {
		t.Fatalf("sent %s, want one muc#user <x/>", w.String())
	}
	c1.Close()
	srv.set(func(srv *peerServer) { srv.noResume = true })
	dialPeer(t, srv, Config{Store: st})
	if w := srv.next(t).nextMessage(t); w.attr("id") != tr.ID() || mucUsers(w) != 1 {
		t.Fatalf("sent again after the restart: %s, want %s with one muc#user <x/>", w.String(), tr.ID())
	}
}
