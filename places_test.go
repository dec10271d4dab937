package xmpptrack

import (
	"errors"
	"testing"

	"github.com/xmpptrack/xmpptrack/sm"
)

// closeNoPlacesOut closes c and checks that every place in
// StreamManagement.MaxUnacked that Reserve or ReserveAnswers handed out
// came back: the workers that write (answers, messages found stored) are
// gone after Close, and a place they kept would be counted for good.
func closeNoPlacesOut(t *testing.T, c *Client) {
	t.Helper()
	c.Close()
	if n := c.sm.Info().Reserved; n != 0 {
		t.Fatalf("%d places in MaxUnacked still reserved after Close", n)
	}
}

// requestReceipts sends n messages that ask for a receipt.
func requestReceipts(pc *peerConn, n int) {
	for i := range n {
		pc.send(`<message from='bob@example.org/pc' type='chat' id='q%d'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
	}
}

// TestAnswersGivePlacesBack: the answer writer gives its places in
// MaxUnacked back whether its answers were written, its wait for room
// ended with Close, its connection ended while answers were pending (they
// are written on the next one), or its write failed.
func TestAnswersGivePlacesBack(t *testing.T) {
	t.Run("written", func(t *testing.T) {
		c, pc := newPeer(t, Config{})
		requestReceipts(pc, 3)
		for range 3 {
			if e := pc.nextMessage(t); e.child("urn:xmpp:receipts", "received") == nil {
				t.Fatalf("the server got %s, want a receipt", e.String())
			}
		}
		closeNoPlacesOut(t, c)
	})
	t.Run("closed while waiting for room", func(t *testing.T) {
		c, _, pc := fullQueue(t, Config{})
		requestReceipts(pc, 3)
		closeNoPlacesOut(t, c)
	})
	t.Run("connection ended while waiting for room", func(t *testing.T) {
		c, srv, pc := fullQueue(t, Config{})
		requestReceipts(pc, 3)
		pc.kill("connection-timeout")
		srv.next(t) // resumed: the queue is still full
		closeNoPlacesOut(t, c)
	})
	t.Run("write failed", func(t *testing.T) {
		srv := newPeerServer(t)
		c := dialPeer(t, srv, Config{})
		pc := srv.next(t)
		requestReceipts(pc, 200) // answered in batches while the connection goes
		pc.raw.Close()
		srv.next(t)
		closeNoPlacesOut(t, c)
	})
}

// TestStoredInDoubtGivesPlaceBack: the client's send of a message in doubt
// that it found stored (resolve.go) gives its place in MaxUnacked back
// when Close ends its wait for room; TestStoreUncertainSentLater checks the
// place of one that was sent.
func TestStoredInDoubtGivesPlaceBack(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: ls, StreamManagement: sm.Config{MaxUnacked: 1}})
	pc := srv.next(t)
	if _, err := sendInDoubt(t, c, ls, Message{To: bob, ID: "later"}); !errors.Is(err, ErrRecordUncertain) {
		t.Fatalf("Send whose write-ahead stayed in doubt: %v; want ErrRecordUncertain", err)
	}
	sendAcked(t, c, Message{To: bob}) // presence acknowledged too
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "fill"}); err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t) // the queue is full
	rounds := resolveRounds(c)
	landAndAnswer(t, ls)
	for c.Tracker("later") == nil {
		nextRound(t, rounds)
	}
	closeNoPlacesOut(t, c)
}
