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

// scheduledScope is the scope of the keys that hold scheduled messages not
// sent yet (name: the id, value: the request, rawRequest as JSON), read by
// status; the store's jobs cannot be read by name.
const scheduledScope = "gateway-scheduled"

var errNotApplied = errors.New("gateway: change not applied")

// storeRecord keeps the record in a store.Store, so that it survives a
// restart and several gateways on one store serve one record.
type storeRecord struct {
	s   store.Store
	now func() time.Time
}

// ClientStore returns the store to give each account's client as
// xmpptrack.Config.Store: Config.Store, through which the gateway also
// learns the feed cursor of each message its client records, so that the
// answer to a POST needs no read of the store. Nil without Config.Store.
// A client given Config.Store itself works too, at the cost of that read.
func (g *Gateway) ClientStore() store.Store {
	if g.cfg.Store == nil {
		return nil
	}
	return cursorStore{Store: g.cfg.Store, g: g}
}

// cursorStore notes the cursors of the messages a client commits.
type cursorStore struct {
	store.Store
	g *Gateway
}

func (s cursorStore) Commit(ctx context.Context, b *store.Batch) error {
	err := s.Store.Commit(ctx, b)
	if err == nil && len(b.Messages) > 0 {
		s.g.mu.Lock()
		for i := range b.Messages {
			m := &b.Messages[i]
			if lm := s.g.live[m.ID]; lm != nil {
				lm.cursor = Cursor(m.Cursor)
			}
		}
		s.g.mu.Unlock()
	}
	return err
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
	Created  time.Time  `json:"created,omitzero"`
	Title    string     `json:"title,omitempty"`
	Priority *int       `json:"priority,omitempty"`
}

func (r *storeRecord) create(ctx context.Context, st Status, key string, hash [32]byte) (Status, bool, error) {
	if key != "" {
		scope, name, _ := strings.Cut(key, ":")
		val, claimed, err := r.s.ClaimKey(ctx, store.Key{Scope: keyScope + scope, Name: name,
			Value: st.ID + " " + hex.EncodeToString(hash[:]), Expires: r.now().Add(24 * time.Hour)})
		if err != nil {
			return Status{}, false, err
		}
		if !claimed {
			id, h, _ := strings.Cut(val, " ")
			if h != hex.EncodeToString(hash[:]) {
				return Status{}, false, errIdemMismatch
			}
			// The head first: a scheduled message not sent yet has no
			// cursor, and its changes come after this one.
			head, err := r.s.LastCursor(ctx)
			if err != nil {
				return Status{}, false, err
			}
			old, err := r.status(ctx, id)
			if err == nil && old.Cursor == 0 {
				old.Cursor = Cursor(head)
			}
			if err == nil {
				return *old, false, nil
			}
			if !errors.Is(err, errNotFound) {
				return Status{}, false, err
			}
			// The request that claimed the key recorded nothing: it failed
			// before sending (or is sending right now). Send under the
			// key's id: the store takes the id once, so of two concurrent
			// sends one fails with a duplicate id and replays the other.
			st.ID = id
		}
	}
	// Nothing is written here: the account's client records the message
	// when it sends it (write-ahead, xmpptrack.Config.Store), a scheduled
	// message is a job (see jobScheduler), and a message that fails before
	// either is recorded settled (settle).
	return st, true, nil
}

// settle records, in one batch, a message the client never recorded (a
// send that failed before it was tracked, a scheduled message cancelled or
// never scheduled) with its final change: its history is IN_TRANSIT, when
// it was accepted, then c. The gateway owns it: {account, "gateway"}.
func (r *storeRecord) settle(ctx context.Context, st *Status, c Change) (Event, error) {
	raw, _ := json.Marshal(st.raw)
	m := store.Message{
		ID: st.ID, Owner: store.Instance{Account: st.From, Resource: ownerResource},
		To: st.To, Room: st.Type == "groupchat", Thread: st.Thread, Channel: st.Channel,
		Raw: raw, Created: st.Created, State: tracking.InTransit,
	}
	b := &store.Batch{Messages: []store.Message{m}, Changes: []store.Change{storeChange(st.ID, c)}}
	// An id that exists (store.ErrExists) was sent by another request
	// with the same Idempotency-Key: its record is left alone.
	if err := r.commit(ctx, b); err != nil {
		return Event{}, err
	}
	if b.Changes[0].Cursor == 0 {
		return Event{}, errNotApplied
	}
	c.Cursor = Cursor(b.Changes[0].Cursor)
	return Event{ID: st.ID, To: st.To, Channel: st.Channel, Change: c}, nil
}

// waitMessage reads a message that another request claimed the key for; its
// client may still be committing it.
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
	if err := r.commit(ctx, b); err != nil {
		return Event{}, err
	}
	if b.Changes[0].Cursor == 0 {
		return Event{}, errNotApplied
	}
	c.Cursor = Cursor(b.Changes[0].Cursor)
	return Event{ID: id, Change: c}, nil
}

// commit commits a batch of one change. A batch stored whose cursors were
// lost (store.ErrCursorsUnknown) is read back for the change's cursor: a
// message reaches each state once, so its history's change to the state
// asked for, at the time this change gives, is this change (0, not
// applied, when there is none: another writer, such as the account's
// client, recorded that state first, at its own time).
func (r *storeRecord) commit(ctx context.Context, b *store.Batch) error {
	err := r.s.Commit(ctx, b)
	if !errors.Is(err, store.ErrCursorsUnknown) {
		return err
	}
	c := &b.Changes[0]
	rec, err := r.s.Message(ctx, c.ID)
	if err != nil {
		return err
	}
	for _, h := range rec.History {
		// A store keeps at least microseconds of a time.
		if d := h.At.Sub(c.At); h.State == c.State && (c.At.IsZero() || d > -time.Microsecond && d < time.Microsecond) {
			c.Cursor = h.Cursor
		}
	}
	return nil
}

func (r *storeRecord) status(ctx context.Context, id string) (*Status, error) {
	rec, err := r.s.Message(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return r.scheduled(ctx, id)
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
		st.SendAt = raw.SendAt // the request, recorded by the gateway
	} else {
		// Sent by its client, or settled (its Raw dropped): a scheduled
		// message's decision keeps its send_at and when it was accepted.
		if err := r.decided(ctx, st); err != nil {
			return nil, err
		}
	}
	for _, c := range rec.History {
		st.History = append(st.History, changeOf(c, rec.Room))
	}
	return st, nil
}

// scheduled returns the status of a scheduled message that is not sent yet
// (nor cancelled), from its key, or errNotFound. It writes nothing.
func (r *storeRecord) scheduled(ctx context.Context, id string) (*Status, error) {
	val, ok, err := r.s.Key(ctx, scheduledScope, id)
	if err != nil {
		return nil, err
	}
	var raw rawRequest
	if !ok || json.Unmarshal([]byte(val), &raw) != nil {
		return nil, errNotFound
	}
	st := &Status{ID: id, To: raw.To, From: raw.Account, Type: raw.Type, Channel: raw.Channel,
		Thread: raw.Thread, State: State(tracking.InTransit), Created: raw.Created.UTC(), SendAt: raw.SendAt,
		History: []Change{{State: State(tracking.InTransit), At: raw.Created.UTC()}}, raw: &raw}
	if st.Type == "" {
		st.Type = "chat"
	}
	return st, nil
}

// decided sets the send_at and creation time of a scheduled message that
// was sent or cancelled, from its decision (see jobScheduler.decide).
func (r *storeRecord) decided(ctx context.Context, st *Status) error {
	v, ok, err := r.s.Key(ctx, decisionScope, st.ID)
	if err != nil || !ok {
		return err
	}
	if d, ok := parseDecision(v); ok && !d.sendAt.IsZero() {
		st.SendAt = &d.sendAt
		st.Created = d.created.UTC()
	}
	return nil
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
	// Only an empty page shows that no change up to the head is left for
	// this follower (a store may return fewer changes than asked with more
	// to come): the changes the filter left out up to the head need not be
	// read again.
	if len(cs) == 0 && Cursor(head) > next {
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

func storeChange(id string, c Change) store.Change {
	sc := store.Change{ID: id, State: tracking.MessageState(c.State), At: c.At,
		Evidence: store.Evidence{From: c.From, StanzaID: c.StanzaID}}
	if c.Error != nil {
		sc.Condition, sc.Text = c.Error.Condition, c.Error.Text
	}
	return sc
}
