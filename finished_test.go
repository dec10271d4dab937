package xmpptrack

import "testing"

// TestFinishedCountPerConnection: a callback of an old connection that
// returns while the client starts a new one is not counted for the new
// one, even when the new connection starts between its check of the
// connection and its count: the new connection would claim (in the saved
// inbound count, and in its acks) a stanza still in its callbacks.
func TestFinishedCountPerConnection(t *testing.T) {
	var d durable
	d.newConn()
	old, _ := d.counts()
	d.finish(old) // a stanza of the old connection, finished in time
	if _, fin := d.counts(); fin != 1 {
		t.Fatalf("finished %d, want 1", fin)
	}
	hook := func() {
		d.finishHook.Store(nil)
		d.newConn()
	}
	d.finishHook.Store(&hook)
	d.finish(old) // its next one returns as the new connection starts
	if gen, fin := d.counts(); gen != old+1 || fin != 0 {
		t.Errorf("connection %d finished %d; want connection %d with none finished", gen, fin, old+1)
	}
	d.finish(old + 1)
	if gen, fin := d.counts(); gen != old+1 || fin != 1 {
		t.Errorf("connection %d finished %d; want connection %d with one finished", gen, fin, old+1)
	}
}
