package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// ownerResource is the resource of the store.Instance the gateway records
// its messages under: {account, "gateway"}.
const ownerResource = "gateway"

// keyScope prefixes the scope of the gateway's idempotency keys.
const keyScope = "gateway:"

var errNotApplied = errors.New("gateway: change not applied")

// storeRecord keeps the record in a store.Store, so that it survives a
// restart and several gateways on one store serve one record.
type storeRecord struct {
	s   store.Store
	now func() time.Time
}

// rawRequest is what the gateway stores as a message's Raw: the request it
// accepted (JSON), which is what it needs to send the message later.
type rawRequest struct {
	To       string     `json:"to"`
	Body     string     `json:"body"`
	Type     string     `json:"type"`
	Thread   string     `json:"thread,omitempty"`
	Window   Duration   `json:"window,omitempty"`
	Channel  string     `json:"channel,omitempty"`
	Account  string     `json:"account"`
	SendAt   *time.Time `json:"send_at,omitempty"`
	Title    string     `json:"title,omitempty"`
	Priority *int       `json:"priority,omitempty"`
}

func (r *storeRecord) create(ctx context.Context, st *Status, key string, hash [32]byte) (*Status, bool, error) {
	if key != "" {
		scope, name, _ := strings.Cut(key, ":")
		val, claimed, err := r.s.ClaimKey(ctx, store.Key{Scope: keyScope + scope, Name: name,
			Value: st.ID + " " + hex.EncodeToString(hash[:]), Expires: r.now().Add(24 * time.Hour)})
		if err != nil {
			return nil, false, err
		}
		if !claimed {
			id, h, _ := strings.Cut(val, " ")
			if h != hex.EncodeToString(hash[:]) {
				return nil, false, errIdemMismatch
			}
			old, err := r.status(ctx, id)
			if !errors.Is(err, errNotFound) {
				return old, false, err
			}
			// The request that claimed the key recorded nothing: it failed
			// before sending (or is committing right now). Record the
			// message under the key's id; one of the two commits wins.
			again := *st
			again.ID = id
			st = &again
		}
	}
	out, err := r.commitNew(ctx, st)
	if errors.Is(err, store.ErrExists) && key != "" {
		old, err := r.waitMessage(ctx, st.ID)
		return old, false, err
	}
	if errors.Is(err, store.ErrExists) {
		return nil, false, tracking.ErrDuplicateID
	}
	return out, err == nil, err
}

// commitNew writes a new message in IN_TRANSIT.
func (r *storeRecord) commitNew(ctx context.Context, st *Status) (*Status, error) {
	raw, _ := json.Marshal(st.raw)
	m := store.Message{
		ID: st.ID, Owner: store.Instance{Account: st.From, Resource: ownerResource},
		To: st.To, Room: st.Type == "groupchat", Thread: st.Thread, Channel: st.Channel,
		Raw: raw, Created: st.Created, State: tracking.InTransit,
	}
	b := &store.Batch{Messages: []store.Message{m}}
	if err := r.s.Commit(ctx, b); err != nil {
		return nil, err
	}
	out := *st
	out.Cursor = Cursor(b.Messages[0].Cursor)
	out.History = []Change{{State: State(tracking.InTransit), At: st.Created, Cursor: out.Cursor}}
	return &out, nil
}

// waitMessage reads a message that another request claimed the key for; it
// may still be committing it.
func (r *storeRecord) waitMessage(ctx context.Context, id string) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		h, err := r.s.LastCursor(ctx)
		if err != nil {
			return nil, err
		}
		st, err := r.status(ctx, id)
		if !errors.Is(err, errNotFound) {
			return st, err
		}
		if err := r.s.Wait(ctx, h); err != nil {
			return nil, err
		}
	}
}

func (r *storeRecord) change(ctx context.Context, id string, c Change) (Event, error) {
	b := &store.Batch{Changes: []store.Change{storeChange(id, c)}}
	if err := r.s.Commit(ctx, b); err != nil {
		return Event{}, err
	}
	if b.Changes[0].Cursor == 0 {
		return Event{}, errNotApplied
	}
	c.Cursor = Cursor(b.Changes[0].Cursor)
	return Event{ID: id, Change: c}, nil
}

func (r *storeRecord) status(ctx context.Context, id string) (*Status, error) {
	rec, err := r.s.Message(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	st := &Status{
		ID: rec.ID, To: rec.To, From: rec.Owner.Account, Type: "chat", Channel: rec.Channel,
		Thread: rec.Thread, State: State(rec.State), Settled: rec.Settled, Cursor: Cursor(rec.Cursor),
		Created: rec.Created.UTC(), History: make([]Change, 0, len(rec.History)),
	}
	if rec.Room {
		st.Type = "groupchat"
	}
	var raw rawRequest
	if json.Unmarshal(rec.Raw, &raw) == nil && raw.SendAt != nil {
		st.SendAt = raw.SendAt
	}
	for _, c := range rec.History {
		st.History = append(st.History, changeOf(c, rec.Room))
	}
	return st, nil
}

// changeOf converts a stored change. The store keeps no seen-by list: for a
// room message's SEEN_BY_RECIPIENT it is the nick of the marker's sender,
// the occupant known to have displayed it when the change was recorded.
func changeOf(c store.Change, room bool) Change {
	out := Change{State: State(c.State), At: c.At.UTC(), Cursor: Cursor(c.Cursor),
		Evidence: Evidence{From: c.From, StanzaID: c.StanzaID}}
	if c.Condition != "" || c.Text != "" {
		out.Error = &ErrorInfo{Condition: c.Condition, Text: c.Text}
	}
	if room && c.State == tracking.SeenByRecipient {
		if _, nick, ok := strings.Cut(c.From, "/"); ok && nick != "" {
			out.SeenBy = []string{nick}
		}
	}
	return out
}

func (r *storeRecord) changes(ctx context.Context, after Cursor, channels []string, limit int) ([]Event, Cursor, error) {
	head, err := r.s.LastCursor(ctx)
	if err != nil {
		return nil, after, err
	}
	if int64(after) > head {
		return nil, after, errCursorFuture
	}
	cs, err := r.s.Changes(ctx, store.FeedQuery{After: int64(after), Limit: limit, Channels: channels})
	if err != nil {
		return nil, after, err
	}
	out := make([]Event, 0, len(cs))
	next := after
	for _, c := range cs {
		out = append(out, Event{ID: c.ID, To: c.To, Channel: c.Channel, Change: changeOf(c, c.Room)})
		next = Cursor(c.Cursor)
	}
	// Changes the filter left out up to the head need not be read again.
	if len(cs) < limit && Cursor(head) > next {
		next = Cursor(head)
	}
	return out, next, nil
}

func (r *storeRecord) head(ctx context.Context) (Cursor, error) {
	h, err := r.s.LastCursor(ctx)
	return Cursor(h), err
}

func (r *storeRecord) wait(ctx context.Context, after Cursor) error {
	return r.s.Wait(ctx, int64(after))
}

func (r *storeRecord) ping(ctx context.Context) error {
	_, err := r.s.LastCursor(ctx)
	return err
}

// queuedChange is a state change waiting to be committed.
type queuedChange struct {
	id      string
	c       Change
	created time.Time
	flushed chan struct{} // a marker, closed once what came before is done
}

// flushChanges returns once every change queued before the call was
// committed and counted.
func (g *Gateway) flushChanges(ctx context.Context) {
	if g.changeQ == nil {
		return
	}
	ch := make(chan struct{})
	select {
	case g.changeQ <- queuedChange{flushed: ch}:
	case <-ctx.Done():
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// maxChangeBatch bounds the changes committed in one batch.
const maxChangeBatch = 512

// recordChanges commits the queued state changes in order, as many per
// batch as are waiting (the client's callbacks come one at a time; a commit
// each would make the store's latency the limit). When ctx ends it commits
// what is queued still, for up to 5 seconds.
func (g *Gateway) recordChanges(ctx context.Context) {
	r := g.rec.(*storeRecord)
	var batch []queuedChange
	for {
		batch = batch[:0]
		select {
		case q := <-g.changeQ:
			batch = append(batch, q)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			for {
				select {
				case q := <-g.changeQ:
					batch = append(batch, q)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				g.commitChanges(dctx, r, batch)
			}
			cancel()
			return
		}
	drain:
		for len(batch) < maxChangeBatch {
			select {
			case q := <-g.changeQ:
				batch = append(batch, q)
			default:
				break drain
			}
		}
		g.commitChanges(ctx, r, batch)
	}
}

func (g *Gateway) commitChanges(ctx context.Context, r *storeRecord, batch []queuedChange) {
	var changes []queuedChange
	for _, q := range batch {
		if q.flushed == nil {
			changes = append(changes, q)
		}
	}
	defer func() {
		for _, q := range batch {
			if q.flushed != nil {
				close(q.flushed)
			}
		}
	}()
	if len(changes) == 0 {
		return
	}
	b := &store.Batch{Changes: make([]store.Change, len(changes))}
	for i, q := range changes {
		b.Changes[i] = storeChange(q.id, q.c)
	}
	if err := r.s.Commit(ctx, b); err != nil {
		g.log.Warn("gateway: recording state changes failed", "changes", len(changes), "err", err)
		return
	}
	for i, q := range changes {
		if cur := b.Changes[i].Cursor; cur != 0 {
			q.c.Cursor = Cursor(cur)
			g.metrics.observe(Event{ID: q.id, Change: q.c}, q.created)
		}
	}
}

func storeChange(id string, c Change) store.Change {
	sc := store.Change{ID: id, State: tracking.MessageState(c.State), At: c.At,
		Evidence: store.Evidence{From: c.From, StanzaID: c.StanzaID}}
	if c.Error != nil {
		sc.Condition, sc.Text = c.Error.Condition, c.Error.Text
	}
	return sc
}
