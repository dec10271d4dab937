package xmpptrack

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCloseLeavesNoGoroutines is the goroutine-leak check: once Close
// returns, no goroutine that the library started (client, stream
// management, tracking, callbacks) is left, also after a reconnection.
// It runs alone (not parallel), after every earlier test closed its clients,
// so a leak anywhere before it shows here too.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob})
	pc.conn.Close() // a second connection, resumed
	srv.next(t)
	sendAcked(t, c, Message{To: bob})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close does not wait for a callback running when it was called (an
	// inbound stanza handed to the application, say): Close may be called
	// from that callback (see events.wait). The callbacks' goroutine then
	// ends as soon as it returns: only in that case, wait for it.
	c.ev.mu.Lock()
	left := c.ev.left
	c.ev.mu.Unlock()
	select {
	case <-c.ev.done:
	default:
		if !left {
			t.Fatal("Close returned before the callbacks' goroutine ended, with no callback running")
		}
		select {
		case <-c.ev.done:
		case <-waitCtx(t).Done():
			t.Fatal("the callbacks' goroutine did not end after its callback")
		}
	}
	for _, g := range libraryGoroutines() {
		t.Errorf("left running after Close:\n%s", g)
	}
}

// libraryGoroutines returns the stacks of the running goroutines that run
// code of this module's non-test files and none of its test files (test
// helpers, such as the scripted server, may call library code).
func libraryGoroutines() []string {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Dir(self) + string(filepath.Separator)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		lib, test := false, false
		for _, l := range strings.Split(g, "\n") {
			file, ok := strings.CutPrefix(l, "\t"+root)
			if !ok {
				continue
			}
			if strings.Contains(file, "_test.go:") {
				test = true
			} else {
				lib = true
			}
		}
		if lib && !test {
			leaked = append(leaked, g)
		}
	}
	return leaked
}
