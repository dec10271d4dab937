package xmpptrack

import (
	"sync"
)

// maxQueuedStanzas bounds the incoming stanzas that wait for the
// application's callbacks (Config.OnMessage and Config.Handler). When the
// application falls that far behind, the goroutine that reads the stream
// waits for room: it stops reading, TCP pushes back on the server, and
// memory stays bounded (by this many stanzas, each at most the size the
// server lets through). Evidence for our own messages is applied before a
// stanza is queued, so trackers keep moving until the reader waits.
// Measured with OnMessage stuck while a peer sends 200,000 messages with
// 200-byte bodies: 256 stanzas queued and the heap 3 MiB above its
// starting point, against 194,843 queued and 193 MiB after five seconds
// with no bound.
const maxQueuedStanzas = 256

// maxQueuedWaiting is the bound while a call into the client may be
// waiting for the stream (Send waiting for a MaxPending slot or for room in
// the stream-management queue, SendAndWait waiting for proof, Shutdown):
// that call may come from a callback, and what it waits for (an ack, a
// receipt, a marker) may be behind the stanzas that fill the queue, so the
// reader goes on reading. Past this bound it waits in any case, so memory
// stays bounded; a callback that waits for proof while more than this many
// stanzas arrive first waits until its context ends.
const maxQueuedWaiting = 8 * maxQueuedStanzas

// events runs the application's callbacks (OnMessage, Handler, the
// observers' Connected and Disconnected) one at a time, in the order they
// were queued, on one goroutine of the library: never on the goroutine
// that reads the stream, so a callback may call any method of the client,
// Close included.
//
// A callback that panics is not recovered: the program crashes with the
// callback's own stack, as it would have without the library in between.
// A panic is never silently dropped.
type events struct {
	mu      sync.Mutex
	q       []func()      // oldest first
	stanzas int           // entries of q that hold a stanza (bounded)
	peak    int           // the most stanzas queued at once
	space   chan struct{} // closed when a stanza may be queued; nil when nobody waits
	wake    chan struct{} // holds a value when q changed
	running bool          // a callback is running now
	stopped bool          // stop was called: no callback starts any more
	done    chan struct{} // closed when run returned
	left    bool          // wait returned with a callback running (see wait)
	waiting func() bool   // reports a call into the client that may wait for the stream
	idle    func()        // called before pushStanza waits for room (Client.readIdle's Release)
}

func newEvents() *events {
	return &events{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues a callback that is not a stanza (connections, for example):
// it never waits. It reports false after stop.
func (e *events) push(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return false
	}
	e.q = append(e.q, f)
	e.signal()
	return true
}

// pushStanza queues a callback for an incoming stanza, waiting while
// maxQueuedStanzas are queued, until there is room or cancel is closed. It
// reports whether f was queued.
func (e *events) pushStanza(f func(), cancel <-chan struct{}) bool {
	e.mu.Lock()
	for !e.stopped && e.stanzas >= e.limit() {
		if e.space == nil {
			e.space = make(chan struct{})
		}
		space := e.space
		e.mu.Unlock()
		if e.idle != nil {
			e.idle() // the reader waits: nothing it applied is held back
		}
		select {
		case <-space:
		case <-cancel:
			return false
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if e.stopped {
		return false
	}
	e.q = append(e.q, func() {
		e.mu.Lock()
		e.stanzas--
		if e.space != nil {
			close(e.space)
			e.space = nil
		}
		e.mu.Unlock()
		f()
	})
	e.stanzas++
	e.peak = max(e.peak, e.stanzas)
	e.signal()
	return true
}

// limit returns the bound on queued stanzas now.
func (e *events) limit() int {
	if e.waiting != nil && e.waiting() {
		return maxQueuedWaiting
	}
	return maxQueuedStanzas
}

// nudge makes stanza pushers that wait for room look at the bound again.
func (e *events) nudge() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.space != nil {
		close(e.space)
		e.space = nil
	}
}

// signal wakes run. The caller holds e.mu.
func (e *events) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run runs the callbacks until stop.
func (e *events) run() {
	defer close(e.done)
	for {
		e.mu.Lock()
		for len(e.q) == 0 && !e.stopped {
			e.mu.Unlock()
			<-e.wake
			e.mu.Lock()
		}
		if e.stopped {
			e.mu.Unlock()
			return
		}
		f := e.q[0]
		e.q[0] = nil
		e.q = e.q[1:]
		if len(e.q) == 0 {
			e.q = nil // release a past backlog's array
		}
		e.running = true
		e.mu.Unlock()
		f()
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
	}
}

// stop makes run return once the callback running now (if any) returns;
// the callbacks still queued are dropped, and it reports how many. Stanza
// pushers waiting for room are released.
func (e *events) stop() (dropped int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return 0
	}
	e.stopped = true
	dropped = len(e.q)
	clear(e.q)
	e.q = nil
	if e.space != nil {
		close(e.space)
		e.space = nil
	}
	e.signal()
	return dropped
}

// wait waits until run returned, unless a callback is running: that
// callback may be the caller itself (Close called from a callback), so it
// is left to finish on its own. Call it after stop.
func (e *events) wait() {
	e.mu.Lock()
	running := e.running
	e.left = running
	e.mu.Unlock()
	if !running {
		<-e.done
	}
}
