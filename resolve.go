package xmpptrack

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// The client's own look at the messages Send reported ErrRecordUncertain
// for (see there and uncertain.go): one round at a time, on a worker the
// recorder starts.

// resolveEvery is how often the client looks at the store for messages in
// doubt while it keeps some.
const resolveEvery = recorderRetry

// resolveMax bounds the wait between two looks at one message in doubt that
// the store does not have.
const resolveMax = time.Minute

// maybeResolve starts resolveDoubts on a worker when it is due and none
// runs. The recorder calls it on each of its rounds; it never blocks.
func (d *durable) maybeResolve() {
	d.mu.Lock()
	due := len(d.unsure) > 0 && !time.Now().Before(d.resolveAt)
	d.mu.Unlock()
	c := d.client.Load()
	if !due || c == nil || !d.resolving.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		d.resolving.Store(false)
		return
	}
	// Under c.mu, so that Close (which sets closing under it, then waits
	// for the workers) either waits for this one or sees none.
	c.workers.Go(func() {
		defer d.resolving.Store(false)
		c.resolveDoubts()
	})
}

// resolveDoubts looks at the store for each message in doubt that no Send
// holds (see ErrRecordUncertain): a record that is the message, stored
// and unsent, is taken back as Dial takes back the messages of a previous
// process (see reload): sent and tracked while its window lasts, else
// settled TIMED_OUT, stamped with its deadline. A message the store does
// not have is kept until its time ends; the store failing ends the round.
func (c *Client) resolveDoubts() {
	d := c.dur
	d.mu.Lock()
	ids := make([]string, 0, len(d.unsure))
	for id := range d.unsure {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		h := d.tryClaim(id)
		if h == nil {
			continue
		}
		send, ok := c.resolve(h.e)
		d.release(h)
		if send != nil {
			send()
		}
		if !ok {
			break
		}
	}
	d.mu.Lock()
	d.resolveAt = time.Now().Add(resolveEvery)
	d.mu.Unlock()
	if hook := d.resolveHook.Load(); hook != nil {
		(*hook)()
	}
}

// resolve resolves one held message in doubt (see resolveDoubts). ok is
// false when the store failed; send, if not nil, sends it, to be called
// once it is released.
func (c *Client) resolve(e *doubt) (send func(), ok bool) {
	d := c.dur
	now := time.Now()
	d.mu.Lock()
	resolved, until, next, wait, owed := e.resolved, e.until, e.next, e.wait, e.owed != nil
	sm, created := e.sm, slices.Clone(e.created)
	d.mu.Unlock()
	if owed {
		c.reportOwed(e) // at the MaxPending bound, again next round
		return nil, true
	}
	if resolved {
		if !now.Before(until) {
			d.dropped(e)
		}
		return nil, true
	}
	if now.Before(next) {
		return nil, true
	}
	ctx, cancel := context.WithTimeout(c.ctx, resolveEvery)
	defer cancel()
	rec, err := d.st.Message(ctx, sm.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Not stored (yet): looked at again less and less often, at the
		// latest once its time ended, when it goes.
		wait = min(max(2*wait, resolveEvery), resolveMax)
		if next = now.Add(wait); next.After(until) {
			next = until
		}
		d.mu.Lock()
		e.wait, e.next = wait, next
		e.drop = e.drop || !now.Before(until)
		d.mu.Unlock()
		return nil, true
	case err != nil:
		return nil, false
	case d.isThis(rec, sm):
	case d.mine(rec, sm.To, created):
		d.resolved(e) // settled, or moving, already
		return nil, true
	default:
		d.dropped(e) // another message's record: ours can no longer land
		return nil, true
	}
	m := rec.Message
	if windowEnded(m, now) {
		d.timedOut(e, m)
		c.reportOwed(e) // now, or on a later round
		return nil, true
	}
	t, err := c.trackStored(m, now)
	if err != nil {
		// At the MaxPending bound: the next round tries again.
		c.log.Debug("xmpptrack: a message in doubt found stored cannot be tracked yet", "id", m.ID, "err", err)
		return nil, true
	}
	if hook := d.trackedHook.Load(); hook != nil {
		(*hook)()
	}
	d.mu.Lock()
	msg, payload := e.msg, e.payload
	d.mu.Unlock()
	d.resolved(e)
	return func() { c.sendStored(t, msg, payload) }, true
}

// sendStored sends a message in doubt that the store turned out to hold,
// as Send would have: a failure ends its tracker ABORTED.
func (c *Client) sendStored(t *tracking.MessageTracker, m Message, payload *tokbuf.Buffer) {
	conv, id := c.convs.Conv(m.To), t.ID()
	room, err := c.sm.Reserve(c.ctx)
	if err == nil {
		err = c.writeMessage(c.ctx, id, conv, m, payload)
		room.Release()
	}
	if err != nil {
		c.log.Debug("xmpptrack: a message in doubt found stored was not sent", "id", id, "err", err)
		c.reg.Lost(conv, id)
	}
}
