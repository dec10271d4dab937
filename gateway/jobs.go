package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// Durable scheduling: a scheduled message is a job of the store's queue
// sendQueue, named by the message id and due at send_at. Every gateway on the
// store claims due jobs (a claim is exclusive for jobLease), sends the
// message from the request stored with it, and deletes the job. A gateway
// that dies while sending leaves the job to be claimed again after the
// lease: the message may then be sent twice, never lost.
//
// Sending and cancelling race for one idempotency key per message
// (decisionScope): whoever claims it first decides, durably, so that a
// cancelled message is never sent and a message being sent is never reported
// cancelled.
const (
	decisionScope = "gateway-send-decision"
	sendQueue     = "gateway-send"
	jobLease      = time.Minute
	jobPoll       = time.Second
	// handBack is when a job this gateway cannot send (not its account)
	// is due again, for the gateway that can.
	handBack = 2 * jobPoll
)

type jobScheduler struct {
	g *Gateway
	s store.Store
}

func (j *jobScheduler) add(ctx context.Context, o outgoing) error {
	raw := o.rawOf()
	raw.Created = o.created
	data, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	// The key first: a job whose key is missing would be sent but not
	// shown; a key without its job is shown, then refused when cancelled.
	if _, _, err := j.s.ClaimKey(ctx, store.Key{Scope: scheduledScope, Name: o.msg.ID, Value: string(data),
		Expires: o.sendAt.Add(24 * time.Hour)}); err != nil {
		return err
	}
	return j.s.PutJob(ctx, store.Job{Queue: sendQueue, Name: o.msg.ID, Due: o.sendAt, Data: data})
}

func (j *jobScheduler) cancel(ctx context.Context, st *Status) (bool, error) {
	// Only a message scheduled and not sent yet (nor cancelled and
	// recorded): a request that cancels nothing writes nothing.
	if st.Settled {
		return false, nil
	}
	if _, ok, err := j.s.Key(ctx, scheduledScope, st.ID); err != nil || !ok {
		return false, err
	}
	d := decision{what: "cancel", created: st.Created}
	if st.SendAt != nil {
		d.sendAt = *st.SendAt
	}
	v, _, err := j.decide(ctx, st.ID, d)
	if err != nil || v.what != "cancel" {
		return false, err
	}
	// Cancelled, now or by an earlier request that could not record it
	// (its job is gone then): the caller records it.
	_, err = j.s.DeleteJob(ctx, sendQueue, st.ID)
	return err == nil, err
}

// decision is what became of a scheduled message: sent or cancelled. It
// keeps the message's send_at and creation time, which a message its client
// recorded has no room for, so that its status shows them once sent.
type decision struct {
	what            string // "send" or "cancel"
	sendAt, created time.Time
}

func (d decision) String() string {
	if d.sendAt.IsZero() {
		return d.what
	}
	return d.what + " " + d.sendAt.Format(time.RFC3339Nano) + " " + d.created.Format(time.RFC3339Nano)
}

func parseDecision(v string) (decision, bool) {
	what, rest, _ := strings.Cut(v, " ")
	d := decision{what: what}
	if rest == "" {
		return d, what != ""
	}
	a, c, _ := strings.Cut(rest, " ")
	var err1, err2 error
	d.sendAt, err1 = time.Parse(time.RFC3339Nano, a)
	d.created, err2 = time.Parse(time.RFC3339Nano, c)
	return d, err1 == nil && err2 == nil
}

// decide claims the decision for a scheduled message and returns the one
// that holds.
func (j *jobScheduler) decide(ctx context.Context, id string, d decision) (decision, bool, error) {
	v, claimed, err := j.s.ClaimKey(ctx, store.Key{Scope: decisionScope, Name: id, Value: d.String(),
		Expires: j.g.now().Add(maxSchedule + 24*time.Hour)})
	if err != nil {
		return decision{}, false, err
	}
	held, _ := parseDecision(v)
	return held, claimed, nil
}

func (j *jobScheduler) run(ctx context.Context) {
	t := time.NewTicker(jobPoll)
	defer t.Stop()
	for {
		jobs, err := j.s.ClaimJobs(ctx, sendQueue, j.g.now(), jobLease, 100)
		if err != nil && ctx.Err() == nil {
			j.g.log.Warn("gateway: claiming scheduled sends failed", "err", err)
		}
		for _, job := range jobs {
			j.send(ctx, job)
		}
		if len(jobs) == 100 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// send sends one claimed message, unless it was cancelled meanwhile.
func (j *jobScheduler) send(ctx context.Context, job store.Job) {
	_, err := j.s.Message(ctx, job.Name)
	if err == nil {
		// Sent (its client recorded it) or cancelled already.
		j.s.DeleteJob(ctx, sendQueue, job.Name)
		return
	}
	if !errors.Is(err, store.ErrNotFound) {
		return // claimed again after the lease
	}
	var raw rawRequest
	if err := json.Unmarshal(job.Data, &raw); err != nil {
		j.g.log.Warn("gateway: a scheduled message's request is unreadable", "id", job.Name, "err", err)
		j.s.DeleteJob(ctx, sendQueue, job.Name)
		return
	}
	o, err := j.g.outgoingOf(job.Name, &raw)
	if err != nil {
		// Not an account of this gateway (yet: accounts are added after
		// New), or of another instance on the store: handed back soon,
		// rather than held for the lease.
		j.g.log.Debug("gateway: cannot send a scheduled message here", "id", job.Name, "err", err)
		job.Due = j.g.now().Add(handBack)
		j.s.PutJob(ctx, job)
		return
	}
	d := decision{what: "send", created: o.created}
	if r := raw.SendAt; r != nil {
		d.sendAt = *r
	}
	v, _, err := j.decide(ctx, job.Name, d)
	if err != nil {
		return // claimed again after the lease
	}
	if v.what == "send" { // also when an earlier attempt died before sending
		j.g.dispatch(o)
		if _, err := j.s.Message(ctx, job.Name); err != nil {
			// Neither its client nor the gateway recorded it (the store
			// failed): sent again after the lease.
			j.g.log.Warn("gateway: a scheduled message was not recorded; trying again", "id", job.Name, "err", err)
			return
		}
	}
	j.s.DeleteJob(ctx, sendQueue, job.Name)
}
