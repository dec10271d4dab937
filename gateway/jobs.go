package gateway

import (
	"context"
	"encoding/json"
	"errors"
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
)

type jobScheduler struct {
	g *Gateway
	s store.Store
}

func (j *jobScheduler) add(ctx context.Context, o *outgoing) error {
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

func (j *jobScheduler) cancel(ctx context.Context, id string) (bool, error) {
	v, _, err := j.decide(ctx, id, "cancel")
	if err != nil || v != "cancel" {
		return false, err
	}
	return j.s.DeleteJob(ctx, sendQueue, id)
}

// decide claims the decision for a scheduled message and returns the one
// that holds.
func (j *jobScheduler) decide(ctx context.Context, id, what string) (string, bool, error) {
	return j.s.ClaimKey(ctx, store.Key{Scope: decisionScope, Name: id, Value: what,
		Expires: j.g.now().Add(maxSchedule + 24*time.Hour)})
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
		// Not an account of this gateway: another instance may have it.
		j.g.log.Debug("gateway: cannot send a scheduled message here", "id", job.Name, "err", err)
		return
	}
	v, _, err := j.decide(ctx, job.Name, "send")
	if err != nil {
		return // claimed again after the lease
	}
	if v == "send" { // also when an earlier attempt died before sending
		j.g.dispatch(o)
	}
	j.s.DeleteJob(ctx, sendQueue, job.Name)
}
