package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// sendRequest is the body of POST /v1/messages.
type sendRequest struct {
	To          string    `json:"to"`
	Body        *string   `json:"body"`
	Type        string    `json:"type,omitempty"`
	From        string    `json:"from,omitempty"`
	Thread      string    `json:"thread,omitempty"`
	Window      *Duration `json:"window,omitempty"`
	SendAt      *jsonTime `json:"send_at,omitempty"`
	Channel     string    `json:"channel,omitempty"`
	Wait        string    `json:"wait,omitempty"`
	WaitTimeout *Duration `json:"wait_timeout,omitempty"`
}

// sendResponse answers POST /v1/messages and /v1/notify.
type sendResponse struct {
	ID      string `json:"id"`
	State   State  `json:"state"`
	Cursor  Cursor `json:"cursor"`
	Settled bool   `json:"settled"`
	// Reached tells, when the request asked to wait, whether the awaited
	// state was reached.
	Reached *bool `json:"reached,omitempty"`
}

// appendJSON appends r as encoding/json writes it (the answer of every
// POST, written without reflection).
func (r sendResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"state":"`...)
	b = append(b, r.State.String()...)
	b = append(b, `","cursor":"`...)
	b = strconv.AppendUint(b, uint64(r.Cursor), 10)
	b = append(b, `","settled":`...)
	b = strconv.AppendBool(b, r.Settled)
	if r.Reached != nil {
		b = append(b, `,"reached":`...)
		b = strconv.AppendBool(b, *r.Reached)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // escaping needed: as encoding/json does it
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func (g *Gateway) postMessage(w http.ResponseWriter, r *http.Request) {
	req, p := decodeSend(w, r, g.cfg.MaxBody)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var o outgoing
	if p := g.validateMessage(&req, &o); p != nil {
		writeProblem(w, p)
		return
	}
	g.submit(w, r, &o, func() [32]byte { c := req; return requestHash("messages", &c) })
}

func (g *Gateway) validateMessage(req *sendRequest, o *outgoing) *problem {
	if p := g.validateCommon(common{req.To, req.From, req.Type, req.Channel}, o); p != nil {
		return p
	}
	if req.Body == nil {
		return fieldProblem("missing-field", "body", `"body" is required`)
	}
	if *req.Body == "" {
		return fieldProblem("invalid-field", "body", "body must not be empty")
	}
	if p := validText("body", *req.Body); p != nil {
		return p
	}
	o.msg.Body = *req.Body
	if len(req.Thread) > maxThread && utf8.RuneCountInString(req.Thread) > maxThread {
		// Characters, as openapi.json's maxLength counts them.
		return fieldProblem("invalid-field", "thread", "thread is at most 256 characters")
	}
	if p := validText("thread", req.Thread); p != nil {
		return p
	}
	o.msg.Thread = req.Thread
	if p := validateWindow(req.Window, o); p != nil {
		return p
	}
	if p := g.validateSendAt((*time.Time)(req.SendAt), o); p != nil {
		return p
	}
	return g.validateWait(req.Wait, req.WaitTimeout, o)
}

// submit records the message (or finds the one sent under the same
// Idempotency-Key), sends it or schedules it, waits if asked and answers.
// hash is called only for a request with an Idempotency-Key: only those
// are compared with an earlier request.
func (g *Gateway) submit(w http.ResponseWriter, r *http.Request, o *outgoing, hashOf func() [32]byte) {
	var key string
	var p *problem
	if v := r.Header.Get("Idempotency-Key"); v != "" {
		key, p = idempotencyKey(v, g.tokenID(r))
	}
	if p != nil {
		writeProblem(w, p)
		return
	}
	var hash [32]byte
	if key != "" {
		hash = hashOf()
	}
	st, created, p := g.create(r.Context(), o, key, hash)
	if p != nil {
		writeProblem(w, p)
		return
	}
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	} else if o.sendAt.IsZero() {
		cur, dup, p := g.dispatch(o)
		if dup && key != "" {
			// A concurrent request with the same key is sending it.
			rst, p := g.replay(r.Context(), o.msg.ID)
			if p != nil {
				writeProblem(w, p)
				return
			}
			st = *rst
			w.Header().Set("Idempotent-Replayed", "true")
		} else if p != nil {
			writeProblem(w, p)
			return
		} else if g.cfg.Store != nil && cur != 0 {
			st.Cursor = cur // its client recorded it through ClientStore
		} else if g.cfg.Store != nil {
			// Its client recorded it: the record has its cursor.
			if rec, err := g.rec.status(r.Context(), o.msg.ID); err == nil {
				st = *rec
			}
		}
	} else if err := g.schedule(r.Context(), o, &st); err != nil {
		// Never to be sent: say so in the record (a retry under the same
		// Idempotency-Key finds it ABORTED).
		g.log.Warn("gateway: scheduling failed", "id", o.msg.ID, "err", err)
		g.rec.settle(g.ctx, o.status(), Change{State: State(tracking.Aborted), At: g.now().UTC(),
			Evidence: Evidence{Error: &ErrorInfo{Condition: "schedule-failed", Text: err.Error()}}})
		p := newProblem("unavailable", "the message could not be scheduled")
		p.ID, p.State = o.msg.ID, tracking.Aborted.String()
		writeProblem(w, p)
		return
	}
	resp := sendResponse{ID: st.ID, State: st.State, Cursor: st.Cursor, Settled: st.Settled}
	if o.waitFor > 0 {
		// Close ends the wait as its timeout would: the message is
		// accepted, and the caller gets its id before the server stops.
		ctx, cancel := context.WithTimeout(r.Context(), o.waitFor)
		defer cancel()
		stop := context.AfterFunc(g.ctx, cancel)
		defer stop()
		cur, reached := g.waitState(ctx, st.ID, o.wait)
		if cur != nil {
			resp = sendResponse{ID: cur.ID, State: cur.State, Cursor: cur.Cursor, Settled: cur.Settled}
		}
		resp.Reached = &reached
		if reached {
			resp.write(w, http.StatusOK)
			return
		}
	}
	resp.write(w, http.StatusAccepted)
}

// schedule hands a message to the scheduler. With a store, a scheduled
// message enters the feed when it is sent: the answer's cursor is the feed's
// head before it was scheduled, so that every change of the message comes
// after it, even when it is due at once.
func (g *Gateway) schedule(ctx context.Context, o *outgoing, st *Status) error {
	if g.cfg.Store != nil {
		h, err := g.rec.head(ctx)
		if err != nil {
			return err
		}
		st.Cursor = h
	}
	return g.sched.add(ctx, *o)
}

// create stores a new message in IN_TRANSIT (in the in-memory record; with
// a store, its client records it when it sends it). The status is a value:
// with a store nothing keeps it, and a plain POST allocates none.
func (g *Gateway) create(ctx context.Context, o *outgoing, key string, hash [32]byte) (Status, bool, *problem) {
	now := g.now().UTC()
	o.msg.ID = xmpptrack.NewID()
	o.created = now
	st := Status{
		ID: o.msg.ID, To: o.to, From: o.account, Type: string(o.msg.Type),
		Channel: o.channel, Thread: o.msg.Thread, State: State(tracking.InTransit), Created: now,
	}
	if !o.sendAt.IsZero() {
		t := o.sendAt
		st.SendAt = &t
	}
	out, created, err := g.rec.create(ctx, st, key, hash)
	switch {
	case errors.Is(err, errIdemMismatch):
		return Status{}, false, newProblem("idempotency-mismatch", "this Idempotency-Key was used for a different request")
	case errors.Is(err, errKeyGone):
		p := newProblem("idempotency-gone", "the message sent under this Idempotency-Key is no longer kept "+
			"(the in-memory record keeps the newest messages only); nothing was sent")
		p.ID = out.ID
		return Status{}, false, p
	case err != nil:
		g.log.Warn("gateway: recording a message failed", "err", err)
		return Status{}, false, newProblem("unavailable", "the record is not available")
	}
	o.msg.ID = out.ID // a retry may take over the id of its first attempt
	if created {
		g.metrics.observe(Event{ID: out.ID, Change: Change{State: State(tracking.InTransit), At: now}}, now)
	}
	return out, created, nil
}

// replay reads the message a concurrent request with the same
// Idempotency-Key is sending.
func (g *Gateway) replay(ctx context.Context, id string) (*Status, *problem) {
	r, ok := g.rec.(*storeRecord)
	if !ok {
		return nil, newProblem("internal", "a duplicate id")
	}
	st, err := r.waitMessage(ctx, id)
	if err != nil {
		g.log.Warn("gateway: reading a message failed", "id", id, "err", err)
		return nil, newProblem("unavailable", "the record is not available")
	}
	return st, nil
}

// dispatch hands an accepted message to its account's client, which
// records it in the store, if any: cur is its cursor then, when the client
// records through ClientStore. dup reports that its id was taken already (a
// concurrent request with the same Idempotency-Key sent it).
func (g *Gateway) dispatch(o *outgoing) (cur Cursor, dup bool, _ *problem) {
	id := o.msg.ID
	created := o.created
	if created.IsZero() {
		created = g.now()
	}
	o.msg.Channel = o.channel
	g.mu.Lock()
	// Concurrent requests with the same Idempotency-Key send the same id
	// (the store takes it once): they share the entry, which goes when
	// none of them tracks it.
	lm := g.live[id]
	if lm == nil {
		lm = &liveMsg{s: o.s, room: o.room, created: created}
		g.live[id] = lm
	}
	lm.sends++
	g.mu.Unlock()
	t, err := o.s.send(g.sendCtx(), o.msg)
	g.mu.Lock()
	// Callbacks may be queued still: a settled tracker's entry stays until
	// the sweep (see sweepLive). The entry may have gone meanwhile (its
	// tracker settled): what is written to it then is not read again.
	lm.sends--
	// Another request with the same Idempotency-Key is sending it, or
	// sent it (the entry is shared).
	others := lm.sends > 0 || (t == nil && lm.t != nil)
	if t != nil {
		lm.t = t
		cur = lm.cursor
	}
	if lm.t == nil && lm.sends == 0 && g.live[id] == lm {
		delete(g.live, id)
	}
	g.mu.Unlock()
	if err == nil {
		return cur, false, nil
	}
	if t == nil && errors.Is(err, tracking.ErrDuplicateID) {
		return 0, true, nil
	}
	g.log.Warn("gateway: send failed", "id", id, "account", o.account, "err", err)
	if t == nil && errors.Is(err, xmpptrack.ErrNotRecorded) {
		// Nothing recorded, nothing sent: a retry under the same
		// Idempotency-Key sends it.
		p := newProblem("unavailable", "the record is not available")
		p.ID = id
		return 0, false, p
	}
	if t == nil {
		// Never tracked: record why. For a message its client could not
		// tell it recorded, this decides it: the store takes the id once,
		// so either the client's record has it (ErrExists: the client
		// sends it) or the ABORTED one does (the client never sends it).
		ev, rerr := g.rec.settle(g.ctx, o.status(), Change{State: State(tracking.Aborted), At: g.now().UTC(),
			Evidence: Evidence{Error: &ErrorInfo{Condition: "send-failed", Text: err.Error()}}})
		if errors.Is(rerr, store.ErrExists) {
			// A concurrent request with the same Idempotency-Key sent it
			// (answered as a replay), or else this request's client's
			// record landed: the client sends it, and the request is
			// answered as the one that sent it, not as a replay.
			return 0, others, nil
		}
		if rerr == nil {
			g.metrics.observe(ev, created)
		} else if errors.Is(err, xmpptrack.ErrRecordUncertain) {
			return 0, false, uncertainProblem(id)
		}
	}
	p := newProblem("send-failed", err.Error())
	p.ID = id
	if st, err := g.rec.status(g.ctx, id); err == nil {
		p.State = st.State.String()
	}
	return cur, false, p
}

// uncertainProblem answers a send whose outcome is unknown: its client
// could not tell whether the store recorded the message
// (xmpptrack.ErrRecordUncertain), and the gateway could not record it
// ABORTED either. If the record landed, the client sends the message once
// it finds it; if not, it is never sent. Not send-failed: a caller that
// believed that and sent the message again could deliver it twice.
func uncertainProblem(id string) *problem {
	p := newProblem("send-uncertain", "the record could not tell whether the message was recorded; "+
		"if it was, it is sent: follow it by its id (GET /v1/messages/{id}, the feed), "+
		"or retry with the same Idempotency-Key, which never sends it twice")
	p.ID = id
	return p
}

// lastReadWait bounds the read of a message's state once its wait ended.
const lastReadWait = 2 * time.Second

// waitState waits until the message reached target, or can no longer reach
// it, or ctx ends. It returns the last status read and whether target was
// reached. When ctx ended (the wait's timeout, Close), the status is read
// once more, under a context of its own: a store's read under ctx would
// fail, and the answer would be the state at acceptance rather than the
// one the message is in.
func (g *Gateway) waitState(ctx context.Context, id string, target tracking.MessageState) (*Status, bool) {
	// A message sent here: wait on its tracker first, which costs no read of
	// the record; then until the record caught up.
	g.mu.Lock()
	var t *tracking.MessageTracker
	if lm := g.live[id]; lm != nil {
		t = lm.t
	}
	g.mu.Unlock()
	if t != nil {
		t.Wait(ctx, target)
	}
	var last *Status
	for {
		h, err := g.rec.head(ctx)
		if err != nil {
			break
		}
		st, err := g.statusOf(ctx, id)
		if err != nil {
			break
		}
		last = st
		s := tracking.MessageState(st.State)
		if s <= tracking.SeenByRecipient && s >= target {
			return st, true
		}
		if st.Settled || s > tracking.SeenByRecipient {
			return st, false
		}
		if err := g.rec.wait(ctx, h); err != nil {
			break
		}
	}
	if ctx.Err() == nil {
		return last, false // the record failed: the last state read stands
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lastReadWait)
	defer cancel()
	st, err := g.statusOf(rctx, id)
	if err != nil {
		return last, false
	}
	s := tracking.MessageState(st.State)
	return st, s <= tracking.SeenByRecipient && s >= target
}

// statusOf reads a message's record; settled also covers trackers whose
// window ended without a change of state.
func (g *Gateway) statusOf(ctx context.Context, id string) (*Status, error) {
	st, err := g.rec.status(ctx, id)
	if err != nil {
		return nil, err
	}
	if !st.Settled {
		g.mu.Lock()
		var t *tracking.MessageTracker
		if lm := g.live[id]; lm != nil {
			t = lm.t
		}
		g.mu.Unlock()
		// Only once the record caught up with the tracker: its callbacks
		// are recorded after the change.
		if t != nil && t.Settled() && State(t.State()) == st.State {
			st.Settled = true
		}
	}
	return st, nil
}

func (g *Gateway) getMessage(w http.ResponseWriter, r *http.Request) {
	st, err := g.statusOf(r.Context(), r.PathValue("id"))
	if err != nil {
		g.recordProblem(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) deleteMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, err := g.statusOf(r.Context(), id)
	if err != nil {
		g.recordProblem(w, err)
		return
	}
	ok, err := g.sched.cancel(r.Context(), st)
	if err != nil {
		g.recordProblem(w, err)
		return
	}
	if !ok {
		p := newProblem("not-cancellable", "only a scheduled message that was not sent yet can be cancelled")
		p.ID, p.State = id, st.State.String()
		writeProblem(w, p)
		return
	}
	ev, err := g.rec.settle(r.Context(), st, Change{State: State(tracking.Closed), At: g.now().UTC()})
	if errors.Is(err, store.ErrExists) {
		// A concurrent DELETE recorded it.
		if cur, err2 := g.rec.status(r.Context(), id); err2 == nil && cur.State == State(tracking.Closed) {
			sendResponse{ID: id, State: cur.State, Cursor: cur.Cursor, Settled: true}.write(w, http.StatusOK)
			return
		}
	}
	if err != nil {
		g.recordProblem(w, err)
		return
	}
	g.metrics.observe(ev, st.Created)
	sendResponse{ID: id, State: ev.State, Cursor: ev.Cursor, Settled: true}.write(w, http.StatusOK)
}

func (g *Gateway) recordProblem(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotFound) {
		writeProblem(w, newProblem("not-found", "no message with this id"))
		return
	}
	g.log.Warn("gateway: record failed", "err", err)
	writeProblem(w, newProblem("unavailable", "the record is not available"))
}
