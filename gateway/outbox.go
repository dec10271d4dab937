package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// The durable webhook outbox: with a store, each webhook's cursor (the last
// change delivered or given up) is a job of its own queue, "gateway-webhook:"
// and a hash of the URL. A gateway delivers to a webhook only while it holds
// that job's claim (a lease of hookLease, renewed every renewEvery while it
// works), so that of several gateways on one store one delivers, in feed
// order; a restarted or surviving gateway takes over from the saved cursor.
// A change delivered just before a crash, whose cursor was not saved yet, is
// delivered again (at least once). Where a webhook starts is fixed once, by
// the first gateway ever: it claims a key whose value is its newest change
// when it was created. Every gateway then adds the job from that value if it
// is missing (store.Store.AddJob, which leaves an existing job alone), so
// that one that died between the two steps leaves nothing undone: the next
// gateway to start creates the job, and the webhook gets every change since
// the first gateway was created.
const (
	hookLease  = time.Minute
	renewEvery = 20 * time.Second
	hookScope  = "gateway-webhook"
)

type outbox struct {
	s    store.Store
	name string
	now  func() time.Time
	// made is set once the job exists.
	made bool
}

func (o *outbox) queue() string { return hookScope + ":" + o.name }

// acquire waits until this gateway holds the webhook's claim and returns
// the saved cursor. The first gateway ever starts from the newest change
// when it was created (w.after).
func (o *outbox) acquire(ctx context.Context, w *webhookWorker) (Cursor, error) {
	head := strconv.FormatInt(int64(w.after), 10)
	for {
		var err error
		if !o.made {
			var start string
			start, _, err = o.s.ClaimKey(ctx, store.Key{Scope: hookScope, Name: o.name,
				Value: head, Expires: o.now().AddDate(100, 0, 0)})
			if err == nil {
				_, err = o.s.AddJob(ctx, store.Job{Queue: o.queue(), Name: "cursor", Due: o.now(),
					Data: []byte(start)})
				o.made = err == nil
			}
		}
		if err == nil {
			var jobs []store.Job
			jobs, err = o.s.ClaimJobs(ctx, o.queue(), o.now(), hookLease, 1)
			if err == nil && len(jobs) == 1 {
				c, perr := parseCursor(string(jobs[0].Data))
				if perr == nil {
					return c, nil
				}
				w.g.log.Warn("gateway: webhook cursor unreadable; starting from the newest change", "webhook", w.name)
				return w.after, nil
			}
		}
		if err != nil && ctx.Err() == nil {
			w.g.log.Warn("gateway: webhook outbox", "webhook", w.name, "err", err)
		}
		// Another gateway delivers, or the store is down: try again later.
		if w.sleep(ctx, renewEvery) != nil {
			return 0, ctx.Err()
		}
	}
}

// save stores the cursor and renews the claim.
func (o *outbox) save(ctx context.Context, c Cursor) {
	o.s.PutJob(ctx, store.Job{Queue: o.queue(), Name: "cursor", Due: o.now().Add(hookLease),
		Data: []byte(c.String())})
}

// release stores the cursor and gives the claim up at once.
func (o *outbox) release(c Cursor) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.s.PutJob(ctx, store.Job{Queue: o.queue(), Name: "cursor", Due: o.now(), Data: []byte(c.String())})
}
