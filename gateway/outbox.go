package gateway

import (
	"context"
	"errors"
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
// delivered again (at least once), as is one delivered before a save the
// store refused (see below). Where a webhook starts is fixed once, by
// the first gateway ever: it claims a key whose value is its newest change
// when it was created. Every gateway then adds the job from that value if it
// is missing (store.Store.AddJob, which leaves an existing job alone), so
// that one that died between the two steps leaves nothing undone: the next
// gateway to start creates the job, and the webhook gets every change since
// the first gateway was created.
//
// The store cannot tell a gateway whether it still holds the claim (a job
// is read only by claiming it), so a gateway counts on its claim only
// while it can prove it: until hookMargin before the due time of its last
// claim or save that the store took (no other gateway claims the job
// before then). A save the store refuses, or one that would come later,
// ends its deliveries at once, and each attempt is cut at that time: the
// gateway then goes back to claiming the job like any other, from the
// cursor last saved, and writes nothing meanwhile (a late save would
// overwrite another gateway's claim and cursor). So two gateways never
// deliver at the same time, provided their clocks differ by less than
// hookMargin (less the store's latency).
const (
	hookLease  = time.Minute
	renewEvery = 20 * time.Second
	hookMargin = 10 * time.Second
	hookScope  = "gateway-webhook"
	// releaseWait bounds the release at Close: a store that does not
	// answer holds Close up that long at most (the claim then ends with
	// its lease).
	releaseWait = 5 * time.Second
)

type outbox struct {
	s    store.Store
	name string
	now  func() time.Time
	// made is set once the job exists.
	made bool
	// until is when the claim this gateway holds ends: the due time of
	// its last claim or save that the store took.
	until time.Time
}

// holds reports whether the claim is this gateway's for sure: up to
// hookMargin before it ends.
func (o *outbox) holds() bool { return o.now().Before(o.deadline()) }

// deadline is when the gateway stops counting on its claim.
func (o *outbox) deadline() time.Time { return o.until.Add(-hookMargin) }

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
			now := o.now()
			jobs, err = o.s.ClaimJobs(ctx, o.queue(), now, hookLease, 1)
			if err == nil && len(jobs) == 1 {
				o.until = now.Add(hookLease)
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

// errClaimRanOut: the webhook's claim is no longer this gateway's for sure.
var errClaimRanOut = errors.New("gateway: the webhook's claim ran out")

// save stores the cursor and renews the claim. An error means that the
// claim is no longer this gateway's for sure: it ran out
// (errClaimRanOut), or the store did not take the save (another gateway
// may claim the job once the last save's lease ends); it writes nothing
// more then. A save cut short only because ctx ended (Close) leaves the
// claim as it was: whether or not the write landed, the claim is this
// gateway's until the end of the one before, so release can still give
// it up.
func (o *outbox) save(ctx context.Context, c Cursor) error {
	if !o.holds() {
		return errClaimRanOut
	}
	sctx, cancel := context.WithDeadline(ctx, o.deadline())
	defer cancel()
	due := o.now().Add(hookLease)
	if err := o.s.PutJob(sctx, store.Job{Queue: o.queue(), Name: "cursor", Due: due, Data: []byte(c.String())}); err != nil {
		if ctx.Err() == nil {
			o.until = time.Time{}
		}
		return err
	}
	o.until = due
	return nil
}

// release stores the cursor and gives the claim up at once, if it is still
// this gateway's. It waits for the store up to releaseWait, and never past
// the claim's deadline.
func (o *outbox) release(c Cursor) {
	if !o.holds() {
		return
	}
	end := o.now().Add(releaseWait)
	if d := o.deadline(); d.Before(end) {
		end = d
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	o.s.PutJob(ctx, store.Job{Queue: o.queue(), Name: "cursor", Due: o.now(), Data: []byte(c.String())})
	o.until = time.Time{}
}
