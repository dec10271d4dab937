package xmpptrack

import (
	"net"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// halfClose ends the server's direction of the TCP connection under TLS
// (a FIN, no TLS close_notify, no </stream:stream>), as a TCP proxy does
// whose server went away, while the connection goes on reading what the
// client writes.
func (pc *peerConn) halfClose() {
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	pc.raw.(*net.TCPConn).CloseWrite()
}

// TestLostConnectionNotClosed: when the server's side of the connection
// ends without a stream close (the client reads EOF), the client drops the
// connection without writing </stream:stream> or a stream error, which
// would end the server's session (Prosody and ejabberd destroy a stream
// management session closed that way); the next connection resumes it.
// A deliberate Close still closes the stream.
func TestLostConnectionNotClosed(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	m := sendAcked(t, c, Message{To: bob})
	resumed := make(chan bool, 1)
	c.Observe(Observer{Connected: func(r bool) { resumed <- r }})
	pc.halfClose()
	select {
	case <-pc.done: // the peer read on until the client dropped the connection
	case <-time.After(testWait):
		t.Fatal("the client did not drop the connection")
	}
	if n := closes(srv); n != 0 {
		t.Errorf("the client closed the lost stream %d times instead of dropping the connection", n)
	}
	pc = srv.next(t)
	if !pc.resumed || !recv(t, resumed) {
		t.Error("the stream was not resumed")
	}
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(m.ID()))
	waitState(t, m, tracking.DeliveredToRecipient)

	c.Close()
	<-pc.done
	if n := closes(srv); n != 1 {
		t.Errorf("Close closed the stream %d times, want 1", n)
	}
}
