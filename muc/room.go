package muc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	mmuc "mellium.im/xmpp/muc"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/route"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// NS is the XEP-0045 namespace.
const NS = mmuc.NS

// Bounds, so that a room cannot grow our memory.
const (
	keepSettled  = 256    // messages remembered for SeenBy and late markers
	maxReaders   = 10_000 // occupants whose read position is kept
	maxOccupants = 10_000 // occupants Occupants lists
)

// ErrNotJoined is returned by Send after the room was left, or when we were
// removed from it.
var ErrNotJoined = errors.New("muc: not in the room")

// ErrNotARoom is returned by Join when the address's service says it is not
// a group chat service (for example a user's address, whose server
// identifies itself as an instant messaging server).
var ErrNotARoom = errors.New("muc: not a group chat address")

// Config configures a Room. The zero value is ready to use.
type Config struct {
	// PassReflections hands the room's reflections of our tracked messages
	// to the client's handler too. By default they are consumed.
	PassReflections bool
	// Logger receives room events at debug level. Nil means silent.
	Logger *slog.Logger
	// OnSuspect is called when the room itself (its bare JID) answers one
	// of our messages with an error that suggests we are no longer an
	// occupant although we never saw ourselves leave (not-acceptable,
	// item-not-found or remote-server-*: a "ghost" membership after a room
	// or server restart). err is the error reply. The room is joined again
	// (rate-limited, see the package docs); the message's tracker is in
	// Error and is not re-sent. It runs on its own goroutine. Nil means no
	// call.
	OnSuspect func(err error)
}

// Occupant is somebody in the room, as the room presents them.
type Occupant struct {
	// Nick is the occupant's nick in the room (for SeenBy: the nick when
	// the marker arrived).
	Nick string
	// OccupantID is the occupant's XEP-0421 id, stable across nick changes
	// and sessions; empty unless the room announces urn:xmpp:occupant-id:0.
	OccupantID string
	// JID is the occupant's real address, when the room reveals it
	// (non-anonymous rooms, or to moderators); else the zero JID.
	JID jid.JID
	// Role is the occupant's role: "moderator", "participant" or "visitor"
	// (empty in SeenBy, which records readers, not roles).
	Role string
}

// Room is a joined group chat whose messages are tracked. It is safe for
// concurrent use.
type Room struct {
	c       *xmpptrack.Client
	addr    jid.JID // room@service/nick as Join was asked
	roomJID jid.JID // room@service
	room    string  // room@service
	cfg     Config
	log     *slog.Logger
	remove  func()
	life    context.Context    // ends when the room is left: stops rejoins
	stop    context.CancelFunc // ends life
	wg      sync.WaitGroup     // the rejoin goroutine

	mu        sync.Mutex
	nick      string               // our nick in the room: the one asked for, or the room's
	joinWait  chan error           // the answer to our pending join presence
	sid, occ  bool                 // the room announces XEP-0359, XEP-0421
	ourOcc    string               // our occupant-id
	occupants map[string]*Occupant // by nick, everybody but us; OccupantID unfiltered
	entries   []*entry             // our messages, entries[i].seq == next-len(entries)+i
	byID      map[string]*entry
	bySID     map[string]*entry
	byTracker map[*tracking.MessageTracker]*entry
	byBody    map[string][]*entry // unreflected messages by body, oldest first
	next      uint64              // position of the next message we send
	seenUpTo  uint64              // one past the newest message a marker covered
	late      []*entry            // reflected after a marker covered them, for the next marker
	readers   map[string]reader   // occupant -> where it read up to
	newest    string              // id to mark for the newest message from another occupant
	leaving   bool                // Leave was called
	in        bool                // the room sent our presence since we (re)joined
	left      bool
	done      chan struct{}
	rejoining bool
	nextJoin  time.Time                       // no rejoin before this
	backoff   time.Duration                   // the wait after the next rejoin
	joinAgain func(context.Context) error     // tests' stand-in for join; nil in use
	observe   func(xmpptrack.Observer) func() // tests' stand-in for forgetPrivate's c.Observe; nil in use
}

// reader is where an occupant read up to, and who it was then.
type reader struct {
	upTo uint64 // one past the newest of our messages it displayed
	who  Occupant
}

// entry is one message we sent to the room.
type entry struct {
	t         *tracking.MessageTracker // nil until Send has it
	id, body  string
	seq       uint64
	sid       string             // room-assigned stanza-id, from the reflection
	reflected bool               // the reflection arrived
	failed    bool               // Send failed: a placeholder that keeps positions
	early     *tracking.Response // a reflection that arrived before t was known
	earlySeen *tracking.Response // a marker that arrived before t was known
}

// Join enters the room given as room@service/nick with the client's current
// session, and returns when the room has sent us its occupant list (see
// Occupants). The answers are read by the goroutine that reads the stream,
// which waits while the client's callbacks are behind: called from a
// callback, Join can wait until ctx ends, so give it a deadline there. It first asks the room's service what it is, so that a user's
// address fails at once with ErrNotARoom; after joining it asks the room
// which ids it announces (XEP-0359, XEP-0421). A refusal by the room is
// returned as a stanza error (errors.As to xstanza.Error): a nick in use,
// a members-only room, a ban. cfg may be nil.
func Join(ctx context.Context, c *xmpptrack.Client, room jid.JID, cfg *Config) (*Room, error) {
	if room.Resourcepart() == "" {
		return nil, errors.New("muc: the room JID needs a nick as its resource: room@service/nick")
	}
	if room.Localpart() == "" {
		return nil, fmt.Errorf("%w: %s has no room name (room@service/nick)", ErrNotARoom, room.Bare())
	}
	r := newRoom(room, cfg)
	r.c = c
	r.remove = c.Observe(xmpptrack.Observer{
		Message:   r.message,
		Presence:  r.presence,
		Connected: r.connected,
		Room:      r.roomJID,
		Route:     r.SendMessage,
		Mark:      r.takeNewest,
	})
	err := r.checkService(ctx)
	if err == nil {
		err = r.join(ctx)
	}
	if err != nil {
		r.mu.Lock()
		r.leaving = true // a rejoin that a new connection started meanwhile stops
		r.mu.Unlock()
		r.stop()
		r.wg.Wait()
		r.remove()
		return nil, err
	}
	return r, nil
}

// forgetPrivate makes the client forget its occupants' private messages
// that wait for a marker (remembered, or still waiting for OnMessage), as
// leaving the room does: we were probably out of the room, and by the
// time we are back a nick may be somebody else's, our marker theirs. The
// client forgets them when an observer of the room is removed; the
// room's own observer stays (it reads the rejoin's answers and routes
// our messages), so a twin of it that reads nothing is added and removed.
func (r *Room) forgetPrivate() {
	observe := r.observe
	if observe == nil {
		if r.c == nil {
			return
		}
		observe = r.c.Observe
	}
	observe(xmpptrack.Observer{Room: r.roomJID, Route: r.SendMessage, Mark: r.takeNewest})()
}

func newRoom(room jid.JID, cfg *Config) *Room {
	r := &Room{
		addr:      room,
		nick:      room.Resourcepart(),
		roomJID:   room.Bare(),
		room:      room.Bare().String(),
		occupants: make(map[string]*Occupant),
		byID:      make(map[string]*entry),
		bySID:     make(map[string]*entry),
		byTracker: make(map[*tracking.MessageTracker]*entry),
		byBody:    make(map[string][]*entry),
		readers:   make(map[string]reader),
		done:      make(chan struct{}),
	}
	r.life, r.stop = context.WithCancel(context.Background())
	if cfg != nil {
		r.cfg = *cfg
	}
	r.log = r.cfg.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// Addr returns the room's address with our nick, room@service/nick: the
// nick the room uses for us, which may differ from the one Join asked for
// (a nick the room assigned, or changed).
func (r *Room) Addr() jid.JID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrLocked()
}

func (r *Room) addrLocked() jid.JID {
	a, err := r.addr.WithResource(r.nick)
	if err != nil {
		return r.addr
	}
	return a
}

// Done returns a channel closed when we are no longer in the room: after
// Leave, a kick or ban, the room's destruction, or a rejoin the room refused.
func (r *Room) Done() <-chan struct{} { return r.done }

// Occupants returns who else is in the room now, sorted by nick: everybody
// the room announced since we joined, less those who left, without
// ourselves (see Addr). It is empty in a room where we are alone, in which
// our messages still reach DeliveredToRecipient: the room distributed them,
// to nobody. At most 10,000 occupants are listed.
func (r *Room) Occupants() []Occupant {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := make([]Occupant, 0, len(r.occupants))
	for _, o := range r.occupants {
		list = append(list, r.shown(*o))
	}
	slices.SortFunc(list, func(a, b Occupant) int { return strings.Compare(a.Nick, b.Nick) })
	return list
}

// shown hides an occupant-id the room does not vouch for. The caller holds r.mu.
func (r *Room) shown(o Occupant) Occupant {
	if !r.occ {
		o.OccupantID = ""
	}
	return o
}

// Send posts a tracked message with the given body to the room.
func (r *Room) Send(ctx context.Context, body string) (*tracking.MessageTracker, error) {
	return r.SendMessage(ctx, xmpptrack.Message{Body: body})
}

// SendMessage posts a tracked message to the room: m.To and m.Type are set
// for the room, and no receipt is requested (XEP-0184 advises against it in
// group chats; the reflection is the proof). Client.Send of a message to
// the room's bare JID comes here while the room is joined. It is Client.Send
// underneath:
// it waits as Send does, and writes the message again on the next
// connection when a write fails. An id still pending in this room fails
// with tracking.ErrDuplicateID and changes nothing.
func (r *Room) SendMessage(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	m.To = r.roomJID
	m.Type = xstanza.GroupChatMessage
	m.NoReceipt = true
	if m.ID == "" {
		m.ID = xmpptrack.NewID()
	}
	e := &entry{id: m.ID, body: m.Body}
	r.mu.Lock()
	if r.left || r.leaving {
		r.mu.Unlock()
		return nil, ErrNotJoined
	}
	if o := r.byID[e.id]; o != nil && (o.t == nil || !o.t.Settled()) {
		r.mu.Unlock()
		return nil, fmt.Errorf("muc: message id %q: %w", e.id, tracking.ErrDuplicateID)
	}
	e.seq = r.next
	r.next++
	r.entries = append(r.entries, e)
	r.byID[e.id] = e
	r.byBody[e.body] = append(r.byBody[e.body], e)
	r.mu.Unlock()

	t, err := r.c.Send(route.Direct(ctx), m)
	r.mu.Lock()
	defer r.mu.Unlock()
	if t == nil {
		r.fail(e)
		return nil, err
	}
	e.t = t
	r.byTracker[t] = e
	if e.early != nil {
		advance(t, tracking.DeliveredToRecipient, e.early)
		e.early = nil
	}
	if e.earlySeen != nil {
		advance(t, tracking.SeenByRecipient, e.earlySeen)
		e.earlySeen = nil
	}
	return t, err
}

// advance moves a tracker of ours on the room's evidence.
func advance(t *tracking.MessageTracker, to tracking.MessageState, resp *tracking.Response) {
	registry.Advance(t, to, resp)
}

// SeenBy returns who has displayed the message, or a later one of ours in
// the room, sorted by nick: each reader with the nick it had when its marker
// arrived, its occupant-id where the room announces them, and its real JID
// where the room revealed it. Readers are told apart by occupant-id where
// the room announces them, else by nick. It reads the room's memory: nil
// once the message is among the settled ones the room no longer keeps (it
// keeps at least the last 256), and readers beyond the first 10,000
// occupants that sent markers are not listed (their markers still move
// trackers).
func (r *Room) SeenBy(t *tracking.MessageTracker) []Occupant {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byTracker[t]
	if e == nil {
		return nil
	}
	var who []Occupant
	for _, rd := range r.readers {
		if rd.upTo > e.seq {
			who = append(who, r.shown(rd.who))
		}
	}
	slices.SortFunc(who, func(a, b Occupant) int {
		if c := strings.Compare(a.Nick, b.Nick); c != 0 {
			return c
		}
		return strings.Compare(a.OccupantID, b.OccupantID)
	})
	return who
}

// MarkDisplayed sends a displayed marker (XEP-0333) for the newest message
// another occupant sent to the room, which covers every earlier one. It
// references the room's stanza-id where the room announces XEP-0359, else the
// message id. It is what xmpptrack.Client.MarkDisplayed of the room does
// while the room is joined, and xmpptrack.Client.MarkConversation of a
// group chat message from the room (after Leave it queues nothing): the
// marker is queued with the client's receipts and markers,
// and the client's answer writer writes it, taking its place in the queue
// of unacknowledged stanzas as every answer does (sm.State.ReserveAnswers, within
// StreamManagement.MaxUnacked), and writing it again on the next connection
// if its write fails. It never blocks.
//
// It reports whether a marker was queued: false when there is nothing new
// to mark, when the client's Config.NoMarkers is set, once the room was left
// (Leave, or the room removed us) or the client closed, or when the
// client's outbox is full (the newest
// message then stays the one to mark, and a later call may send it). If ctx
// has ended, it queues nothing and returns ctx's error.
//
// A private message from an occupant is not the room's: mark it with
// xmpptrack.Client.MarkConversation of that message.
func (r *Room) MarkDisplayed(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if r.c == nil {
		return false, nil
	}
	// The room's conversation, told by a group chat message of it: never the
	// one-to-one path, even if this call started before Leave or settle
	// removed the room's observer (the client would then take the room's
	// bare JID for a peer's).
	return r.c.MarkConversation(&xmpptrack.Incoming{Type: xstanza.GroupChatMessage, Room: r.roomJID}), nil
}

// takeNewest returns the id to mark for the newest message another
// occupant sent, "" if there is none since the last call or once the room
// is being left.
func (r *Room) takeNewest() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left || r.leaving {
		return ""
	}
	id := r.newest
	r.newest = ""
	return id
}

// Leave exits the room with an optional status text and settles the room's
// pending trackers (those without proof become CLOSED). It first stops a
// rejoin in progress and waits for it, so that once Leave returns the room
// is never joined again. It returns once the leave presence is written,
// without waiting for the room's answer, so that it may be called from
// the client's callbacks (OnMessage, a tracker's callback); ctx bounds the
// wait for a connection and the write. The room is settled in any case.
func (r *Room) Leave(ctx context.Context, status string) error {
	r.mu.Lock()
	if r.left {
		r.mu.Unlock()
		return nil
	}
	r.leaving = true
	r.mu.Unlock()
	r.stop()
	r.wg.Wait()
	var err error
	if r.c != nil {
		err = r.leave(ctx, status)
	}
	r.settle()
	return err
}

// settle ends the room: pending trackers are closed, the observer removed,
// a rejoin stopped. It never waits (it runs on the reading goroutine when
// the room removes us).
func (r *Room) settle() {
	r.mu.Lock()
	if r.left {
		r.mu.Unlock()
		return
	}
	r.left = true
	var open []*tracking.MessageTracker
	for _, e := range r.entries {
		if e.t != nil && !e.t.Settled() {
			open = append(open, e.t)
		}
	}
	close(r.done)
	if r.joinWait != nil {
		r.joinWait <- ErrNotJoined
		r.joinWait = nil
	}
	r.mu.Unlock()
	r.stop()
	if r.remove != nil {
		r.remove()
	}
	for _, t := range open {
		t.Close()
	}
}

// fail marks the entry of a message whose Send failed: it keeps its
// position, gives up its id. The caller holds r.mu.
func (r *Room) fail(e *entry) {
	e.failed = true
	if r.byID[e.id] == e {
		delete(r.byID, e.id)
	}
	r.unbody(e)
	r.trim()
}

// unbody removes a message from those a reflection can match by body: it
// was reflected, failed or is forgotten. Reflections come in the order we
// sent, so it is nearly always the first of its body. The caller holds r.mu.
func (r *Room) unbody(e *entry) {
	q := r.byBody[e.body]
	i := slices.Index(q, e)
	switch {
	case i < 0:
	case len(q) == 1:
		delete(r.byBody, e.body)
	case i == 0:
		q[0] = nil
		r.byBody[e.body] = q[1:]
	default:
		r.byBody[e.body] = slices.Delete(q, i, i+1)
	}
}

// trim forgets the oldest messages beyond keepSettled, as long as they are
// settled (or failed): O(1) amortized, since each message is forgotten
// once. A pending message holds back the ones after it until it settles;
// the client's pending limit bounds those. The caller holds r.mu.
func (r *Room) trim() {
	for len(r.entries) > keepSettled {
		e := r.entries[0]
		if !e.failed && (e.t == nil || !e.t.Settled()) {
			return
		}
		r.entries[0] = nil
		r.entries = r.entries[1:]
		if r.byID[e.id] == e {
			delete(r.byID, e.id)
		}
		if e.sid != "" && r.bySID[e.sid] == e {
			delete(r.bySID, e.sid)
		}
		if e.t != nil {
			delete(r.byTracker, e.t)
		}
		if !e.reflected {
			r.unbody(e)
		}
	}
}

// at returns the entry of position seq, nil if forgotten. The caller holds r.mu.
func (r *Room) at(seq uint64) *entry {
	first := r.next - uint64(len(r.entries))
	if seq < first || seq >= r.next {
		return nil
	}
	return r.entries[seq-first]
}
