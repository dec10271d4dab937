package muc

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	mmuc "mellium.im/xmpp/muc"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// NS is the XEP-0045 namespace.
const NS = mmuc.NS

// Bounds, so that a room cannot grow our memory.
const (
	keepSettled = 256    // settled messages remembered for SeenBy and late markers
	maxReaders  = 10_000 // occupants whose read position is kept
)

// ErrNotJoined is returned by Send after the room was left, or when we were
// removed from it.
var ErrNotJoined = errors.New("muc: not in the room")

// Config configures a Room. The zero value is ready to use.
type Config struct {
	// PassReflections hands the room's reflections of our tracked messages
	// to the client's handler too. By default they are consumed.
	PassReflections bool
	// Logger receives room events at debug level. Nil means silent.
	Logger *slog.Logger
	// OnSuspect is called when the room answers one of our messages with
	// an error that suggests we are no longer an occupant although we never
	// saw ourselves leave (not-acceptable, item-not-found or
	// remote-server-*: a "ghost" membership after a room or server
	// restart). err is the error reply. The room is joined again in any
	// case; the message's tracker is in Error and is not re-sent. It runs on
	// its own goroutine. Nil means no call.
	OnSuspect func(err error)
}

// Room is a joined group chat whose messages are tracked. It is safe for
// concurrent use.
type Room struct {
	c      *xmpptrack.Client
	addr   jid.JID // room@service/nick
	room   string  // room@service
	cfg    Config
	log    *slog.Logger
	mc     *mmuc.Client
	remove func()

	mu        sync.Mutex
	nick      string // our nick in the room: the one asked for, or the room's
	ch        *mmuc.Channel
	sid, occ  bool   // the room announces XEP-0359, XEP-0421
	ourOcc    string // our occupant-id
	entries   []*entry
	byID      map[string]*entry
	bySID     map[string]*entry
	next      uint64            // position of the next message we send
	readers   map[string]uint64 // occupant -> one past the last position it displayed
	newest    string            // id to mark for the newest message from another occupant
	left      bool
	done      chan struct{}
	rejoining bool
	joinAgain func(context.Context) error // tests' stand-in for join; nil in use
}

// entry is one message we sent to the room.
type entry struct {
	t         *tracking.MessageTracker // nil until Send has it
	id, body  string
	seq       uint64
	sid       string             // room-assigned stanza-id, from the reflection
	reflected bool               // the reflection arrived
	early     *tracking.Response // a reflection that arrived before t was known
}

// Join enters the room given as room@service/nick with the client's current
// session, and returns when the room has sent us its occupant list. It then
// asks the room which ids it announces (XEP-0359, XEP-0421). cfg may be nil.
func Join(ctx context.Context, c *xmpptrack.Client, room jid.JID, cfg *Config) (*Room, error) {
	if room.Resourcepart() == "" {
		return nil, errors.New("muc: the room JID needs a nick as its resource: room@service/nick")
	}
	r := &Room{
		c:       c,
		addr:    room,
		nick:    room.Resourcepart(),
		room:    room.Bare().String(),
		mc:      &mmuc.Client{},
		byID:    make(map[string]*entry),
		bySID:   make(map[string]*entry),
		readers: make(map[string]uint64),
		done:    make(chan struct{}),
	}
	if cfg != nil {
		r.cfg = *cfg
	}
	r.log = r.cfg.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.remove = c.Observe(xmpptrack.Observer{
		Message:   r.message,
		Presence:  r.presence,
		Connected: r.connected,
	})
	if err := r.join(ctx); err != nil {
		r.remove()
		return nil, err
	}
	return r, nil
}

// join sends the join presence, waits for the roster, and reads the room's
// features.
func (r *Room) join(ctx context.Context) error {
	s, err := r.c.Session(ctx)
	if err != nil {
		return err
	}
	ch, err := r.mc.Join(ctx, r.addr, s)
	if err != nil {
		return err
	}
	info, err := disco.GetInfo(ctx, "", r.addr.Bare(), s)
	if err != nil {
		r.log.Debug("muc: no disco#info from the room; stanza-ids and occupant-ids untrusted", "room", r.room, "err", err)
	}
	r.mu.Lock()
	r.ch = ch
	r.sid, r.occ = false, false
	for _, f := range info.Features {
		switch f.Var {
		case stanza.NSSID:
			r.sid = true
		case stanza.NSOccupantID:
			r.occ = true
		}
	}
	r.mu.Unlock()
	return nil
}

// Addr returns the room's address with our nick, room@service/nick: the
// nick the room uses for us, which may differ from the one Join asked for
// (a nick the room assigned, or changed).
func (r *Room) Addr() jid.JID {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, err := r.addr.WithResource(r.nick)
	if err != nil {
		return r.addr
	}
	return a
}

// Done returns a channel closed when we are no longer in the room: after
// Leave, a kick or ban, or the room's destruction.
func (r *Room) Done() <-chan struct{} { return r.done }

// Send posts a tracked message with the given body to the room.
func (r *Room) Send(ctx context.Context, body string) (*tracking.MessageTracker, error) {
	return r.SendMessage(ctx, xmpptrack.Message{Body: body})
}

// SendMessage posts a tracked message to the room: m.To and m.Type are set
// for the room, and no receipt is requested (XEP-0184 advises against it in
// group chats; the reflection is the proof). It is Client.Send underneath:
// it waits as Send does, and writes the message again on the next
// connection when a write fails.
func (r *Room) SendMessage(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	m.To = r.addr.Bare()
	m.Type = xstanza.GroupChatMessage
	m.NoReceipt = true
	if m.ID == "" {
		m.ID = xmpptrack.NewID()
	}
	e := &entry{id: m.ID, body: m.Body}
	r.mu.Lock()
	if r.left {
		r.mu.Unlock()
		return nil, ErrNotJoined
	}
	e.seq = r.next
	r.next++
	r.entries = append(r.entries, e)
	r.byID[e.id] = e
	r.mu.Unlock()

	t, err := r.c.Send(ctx, m)
	r.mu.Lock()
	defer r.mu.Unlock()
	if t == nil {
		r.drop(e)
		return nil, err
	}
	e.t = t
	if e.early != nil {
		registry.Advance(t, tracking.DeliveredToRecipient, e.early)
		e.early = nil
	}
	return t, err
}

// SeenBy returns who has displayed the message, or a later one of ours in
// the room: occupant-ids where the room announces them, else nicks, sorted.
// It reads the room's memory: nil once the message is among the settled ones
// the room no longer keeps (it keeps the last 256), and readers beyond the
// first 10,000 occupants that sent markers are not listed (their markers
// still move trackers).
func (r *Room) SeenBy(t *tracking.MessageTracker) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[t.ID()]
	if e == nil || e.t != t {
		return nil
	}
	var who []string
	for reader, upTo := range r.readers {
		if upTo > e.seq {
			who = append(who, reader)
		}
	}
	slices.Sort(who)
	return who
}

// MarkDisplayed sends a displayed marker (XEP-0333) for the newest message
// another occupant sent to the room, which covers every earlier one. It
// references the room's stanza-id where the room announces XEP-0359, else the
// message id. It reports whether there was something new to mark. It writes
// to the stream: do not call it from a Handler. ctx bounds the wait for a
// connection; if it ends while the write is blocked, the connection is
// closed (see Client.Send), and the marker is not sent again.
func (r *Room) MarkDisplayed(ctx context.Context) (bool, error) {
	r.mu.Lock()
	id := r.newest
	r.newest = ""
	r.mu.Unlock()
	if id == "" {
		return false, nil
	}
	s, err := r.c.Session(ctx)
	if err != nil {
		return false, err
	}
	msg := xstanza.Message{To: r.addr.Bare(), Type: xstanza.GroupChatMessage, ID: xmpptrack.NewID()}
	_, err = wire.Write(ctx, s, msg.Wrap(stanza.Marker{Type: stanza.MarkerDisplayed, ID: id}.TokenReader()))
	return true, err
}

// Leave exits the room with an optional status text and settles the room's
// pending trackers (those without proof become CLOSED).
func (r *Room) Leave(ctx context.Context, status string) error {
	r.mu.Lock()
	ch := r.ch
	r.mu.Unlock()
	var err error
	if ch != nil {
		err = ch.Leave(ctx, status)
	}
	r.settle()
	return err
}

// settle ends the room: pending trackers are closed, the observer removed.
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
	r.mu.Unlock()
	r.remove()
	for _, t := range open {
		t.Close()
	}
}

// connected rejoins the room after a connection whose stream could not be
// resumed (room membership does not survive a new session).
func (r *Room) connected(resumed bool) {
	if !resumed {
		r.mu.Lock()
		r.rejoinLocked()
		r.mu.Unlock()
	}
}

// rejoinLocked joins the room again on its own goroutine, unless we left it
// or a rejoin is already running. The caller holds r.mu.
func (r *Room) rejoinLocked() {
	if r.left || r.rejoining {
		return
	}
	r.rejoining = true
	join := r.joinAgain
	if join == nil {
		join = r.join
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := join(ctx)
		r.mu.Lock()
		r.rejoining = false
		r.mu.Unlock()
		if err != nil {
			r.log.Debug("muc: rejoin failed", "room", r.room, "err", err)
		}
	}()
}

// drop forgets an entry. The caller holds r.mu.
func (r *Room) drop(e *entry) {
	delete(r.byID, e.id)
	if e.sid != "" {
		delete(r.bySID, e.sid)
	}
	if i := slices.Index(r.entries, e); i >= 0 {
		r.entries = slices.Delete(r.entries, i, i+1)
	}
}

// trim forgets the oldest settled entries beyond keepSettled. The caller holds r.mu.
func (r *Room) trim() {
	settled := 0
	for _, e := range r.entries {
		if e.t != nil && e.t.Settled() {
			settled++
		}
	}
	for i := 0; settled > keepSettled && i < len(r.entries); {
		e := r.entries[i]
		if e.t != nil && e.t.Settled() {
			r.drop(e)
			settled--
			continue
		}
		i++
	}
}
