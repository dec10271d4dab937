// Package registry is the driving side of message tracking, for this
// module's client and package muc only: it creates the trackers handed to
// applications and turns evidence from the wire into their state changes.
//
// Applications see a tracker as a read-only [tracking.MessageTracker]: they
// can read it, wait for it, register callbacks and close it, never advance
// it. Everything that moves a tracker lives here, behind internal/, so that
// no caller outside the module can claim evidence the wire did not give.
//
// A Registry holds the pending trackers of one account. It keys every
// reference by conversation and id; evidence for unknown ids, other
// conversations, duplicates and late evidence is ignored in O(1) (O(log n)
// for an id it made, once trackers settled out of order). It bounds the
// number of pending trackers and ends windows with one timer for all
// trackers. A pending tracker takes about 43 bytes of heap with an id the
// registry made (see Track) when messages are registered in bursts, up to
// about 62 when they are registered a millisecond or more apart (a 16-byte
// registration mark for each millisecond in which one was), and about 147
// with an id given by the caller. Each peer with messages pending adds its
// conversation, about 160 bytes, and 160 more once it sent a message while
// ours were pending: with one message pending per peer, about 205 to 365
// bytes per pending message. The implementation is in internal/trackcore.
package registry

import (
	"context"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/trackcore"
	"github.com/xmpptrack/xmpptrack/tracking"
)

type core = trackcore.Registry[tracking.Response]

// Defaults for a zero Config.
const (
	DefaultMaxPending = trackcore.DefaultMaxPending
	DefaultWindow     = trackcore.DefaultWindow
)

// ErrShutdown is returned by Track and TryTrack once Close or Shutdown was
// called.
var ErrShutdown = trackcore.ErrShutdown

// QueueLimit returns, for a MaxPending (after defaults), the number of
// queued state changes at which Track waits and the most a stuck callback
// can make the registry hold (see trackcore.QueueLimit).
func QueueLimit(maxPending int) (limit, most int) { return trackcore.QueueLimit(maxPending) }

// TrackOptions are per-message settings for Track.
type TrackOptions = trackcore.TrackOptions

// Config configures a Registry. The zero value is ready to use.
type Config struct {
	// MaxPending bounds the number of trackers that are not settled, and
	// through it the state changes waiting for callbacks (see
	// trackcore.QueueLimit). Track waits and TryTrack fails with
	// tracking.ErrTooManyPending at either bound. Zero means
	// DefaultMaxPending; a negative value means no bound.
	MaxPending int
	// Window is the default tracking window: when it ends, a tracker without
	// proof of delivery to the recipient becomes TimedOut, and one in
	// DeliveredToRecipient or Error stops being tracked. Zero means
	// DefaultWindow; a negative value means no window. Windows are capped at
	// 24 days.
	Window time.Duration
	// OnStateChange, if set, is called for every state change of every
	// tracker of the registry, under the same rules as
	// MessageTracker.OnStateChange and before the tracker's own callbacks.
	OnStateChange func(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response)
	// OnMade, if set, is called for every state change as it is made,
	// under the registry's lock, in the order made, whatever the callbacks
	// do (see trackcore.Config.OnMade): it must only take note.
	OnMade func(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response)
}

// Registry holds the pending trackers of one account and turns evidence into
// transitions. It is safe for concurrent use.
type Registry core

func (r *Registry) core() *core { return (*core)(r) }

func public(t *trackcore.Tracker[tracking.Response]) *tracking.MessageTracker {
	return (*tracking.MessageTracker)(t)
}

// New returns an empty registry.
func New(cfg Config) *Registry {
	c := trackcore.Config[tracking.Response]{MaxPending: cfg.MaxPending, Window: cfg.Window}
	c.OnStateChange = hook(cfg.OnStateChange)
	c.OnMade = hook(cfg.OnMade)
	return (*Registry)(trackcore.NewRegistry(c))
}

// hook adapts a hook on public trackers to the core's; nil stays nil.
func hook(f func(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response)) trackcore.Hook[tracking.Response] {
	if f == nil {
		return nil
	}
	return func(t *trackcore.Tracker[tracking.Response], from, to trackcore.State, resp *tracking.Response) {
		f(public(t), tracking.MessageState(from), tracking.MessageState(to), resp)
	}
}

// Track registers a new pending message with the given id to the
// conversation to (see Conv); an empty id asks for a fresh one that the
// registry makes (the tracker's ID): unpredictable to others, and it costs
// no id string and no map entry (see package tracking, Ids). It waits while MaxPending trackers are
// pending, until a slot frees or ctx ends. Register a message before writing
// it, so that no evidence can arrive before its tracker.
func (r *Registry) Track(ctx context.Context, to, id string, o TrackOptions) (*tracking.MessageTracker, error) {
	t, err := r.core().Track(ctx, to, id, o)
	return public(t), err
}

// TryTrack is Track without waiting: at the bound it returns
// tracking.ErrTooManyPending.
func (r *Registry) TryTrack(to, id string, o TrackOptions) (*tracking.MessageTracker, error) {
	t, err := r.core().TryTrack(to, id, o)
	return public(t), err
}

// Reinstate is TryTrack for a message already on its way (see
// trackcore.Registry.Reinstate): it is tracked whatever the bound.
func (r *Registry) Reinstate(to, id string, o TrackOptions) (*tracking.MessageTracker, error) {
	t, err := r.core().Reinstate(to, id, o)
	return public(t), err
}

// Lookup returns the pending tracker of the message with the given id in the
// conversation conv, or nil.
func (r *Registry) Lookup(conv, id string) *tracking.MessageTracker {
	return public(r.core().Lookup(conv, id))
}

// Find returns the pending tracker of the message with the given id, in any
// conversation, or nil.
func (r *Registry) Find(id string) *tracking.MessageTracker { return public(r.core().Find(id)) }

// Queued returns the number of state changes whose callbacks have not
// finished, and the number at which Track waits (0: no limit).
func (r *Registry) Queued() (n, limit int) { return r.core().Queued() }

// Pending returns the number of trackers that are not settled.
func (r *Registry) Pending() int { return r.core().Pending() }

// ServerAck records that our server acknowledged the message (XEP-0198):
// DeliveredToServer.
func (r *Registry) ServerAck(conv, id string) { r.core().ServerAck(conv, id) }

// ServerAckTo is ServerAck for a message known by the to attribute it was
// written with (sm.Stanza.To): it parses the address only when it is not
// a conversation key already, which a message written by Send always is.
func (r *Registry) ServerAckTo(to, id string) { r.core().ServerAckAddr(to, id, ConvOf) }

// Lost records that our server never acknowledged the message and that it will
// not be re-sent: Aborted (it may still have been delivered).
func (r *Registry) Lost(conv, id string) { r.core().Lost(conv, id) }

// Delivered records proof that a client of the recipient has the message (an
// XEP-0184 receipt or a legacy XEP-0333 received marker) from the sender
// from: DeliveredToRecipient, when from is the message's peer (see Conv). The
// caller checks that the evidence did not come from our own account. It
// ignores group-chat conversations (see TrackOptions.Room).
func (r *Registry) Delivered(from jid.JID, id string, resp *tracking.Response) {
	bare, full := peer(from)
	r.core().Delivered(bare, full, id, resp)
}

// Displayed records an XEP-0333 displayed marker (or a legacy acknowledged
// marker) from the sender from for the message id: that message, and every
// earlier pending message of the sender's conversations that is proven
// delivered, become SeenByRecipient (see trackcore's Registry.Displayed).
func (r *Registry) Displayed(from jid.JID, id, thread string, resp *tracking.Response) {
	bare, full := peer(from)
	r.core().Displayed(bare, full, id, thread, resp)
}

// Incoming records a message the sender from sent us, so that a later marker
// naming it covers our messages sent before it.
func (r *Registry) Incoming(from jid.JID, id string) {
	bare, full := peer(from)
	r.core().Incoming(bare, full, id)
}

// Written records that our message id to conversation conv was written to
// the stream, in wire order (sm.Config.OnWritten), so that a displayed
// marker covers the messages written before the marked one. It never
// writes and queues no callback: it may run inside the writer's output
// lock. Group chats are left alone.
func (r *Registry) Written(conv, id string) { r.core().Written(conv, id) }

// WrittenTo is Written for a message known by the to attribute it was
// written with (sm.Stanza.To), parsed only when it is not a conversation
// key already (see ServerAckTo).
func (r *Registry) WrittenTo(to, id string) { r.core().WrittenAddr(to, id, ConvOf) }

// peer returns the conversation keys a sender's evidence may match: its bare
// JID, and its full JID ("" without a resource).
func peer(from jid.JID) (bare, full string) {
	if from.Resourcepart() != "" {
		full = from.String()
	}
	return from.Bare().String(), full
}

// Peer holds the conversation keys a sender's evidence may match (see
// Conv): its bare JID, and its full JID ("" without a resource). Building
// them formats the address; a reader of a stream of evidence from one
// sender builds them once (PeerOf) and passes them to DeliveredBy,
// DisplayedBy and IncomingBy.
type Peer struct{ Bare, Full string }

// PeerOf returns the conversation keys of the sender from.
func PeerOf(from jid.JID) Peer {
	bare, full := peer(from)
	return Peer{Bare: bare, Full: full}
}

// DeliveredBy is Delivered for a sender given by its keys (PeerOf).
func (r *Registry) DeliveredBy(p Peer, id string, resp *tracking.Response) {
	r.core().Delivered(p.Bare, p.Full, id, resp)
}

// DisplayedBy is Displayed for a sender given by its keys (PeerOf).
func (r *Registry) DisplayedBy(p Peer, id, thread string, resp *tracking.Response) {
	r.core().Displayed(p.Bare, p.Full, id, thread, resp)
}

// IncomingBy is Incoming for a sender given by its keys (PeerOf).
func (r *Registry) IncomingBy(p Peer, id string) { r.core().Incoming(p.Bare, p.Full, id) }

// Conv returns the conversation key of a message sent to to, which decides
// whose evidence counts for it. A message to a bare JID is a conversation
// with that account: receipts and markers from any of its resources count,
// errors from the account, any resource or its domain. A message to a full
// JID is a conversation with that one resource: only its receipts and
// markers count, and errors from it, from the bare JID without a resource
// or from the domain. That is what makes private messages to a room
// occupant (room@service/nick) safe: every occupant shares the room's bare
// JID, and only the occupant addressed, or the room itself, can answer for
// them. For a person's device it means evidence from the person's other
// devices does not count: send to the bare JID to accept any of them.
func Conv(to jid.JID) string {
	if to.Resourcepart() != "" {
		return to.String()
	}
	return to.Bare().String()
}

// ConvCache remembers the conversation key of the last address it was
// asked for, so that a stream of messages to one peer formats the address
// once rather than per message. It is safe for concurrent use; the zero
// value is ready.
type ConvCache struct{ last atomic.Pointer[convMemo] }

type convMemo struct {
	to   jid.JID
	conv string
}

// Conv returns Conv(to).
func (cc *ConvCache) Conv(to jid.JID) string {
	if m := cc.last.Load(); m != nil && m.to.Equal(to) {
		return m.conv
	}
	conv := Conv(to)
	cc.last.Store(&convMemo{to: to, conv: conv})
	return conv
}

// ConvOf is Conv for an address in string form (the to attribute of a
// written stanza); an address that does not parse is its own key.
func ConvOf(to string) string {
	j, err := jid.Parse(to)
	if err != nil {
		return to
	}
	return Conv(j)
}

// ErrorReply records an error reply for the message id: Error, with resp.Err
// as the reason. It counts only when from is the message's recipient (any
// resource), the recipient's domain, or empty (our own server).
func (r *Registry) ErrorReply(from jid.JID, id string, resp *tracking.Response) {
	r.core().ErrorReply(from, id, resp)
}

// Close stops tracking everything: pending trackers become Closed, or keep
// DeliveredToRecipient or Error. Later Track calls fail with ErrShutdown.
func (r *Registry) Close() { r.core().Close() }

// Shutdown stops accepting new messages and waits until every pending
// tracker has settled or ctx ends; it then returns ctx.Err() and tracking
// goes on.
func (r *Registry) Shutdown(ctx context.Context) error { return r.core().Shutdown(ctx) }

// Advance applies evidence to a tracker directly, for callers that correlate
// evidence themselves (package muc: a room's reflection, an occupant's
// marker). It reports whether the transition graph allowed the request.
func Advance(t *tracking.MessageTracker, to tracking.MessageState, resp *tracking.Response) bool {
	_, ok := (*trackcore.Tracker[tracking.Response])(t).Advance(trackcore.State(to), resp)
	return ok
}

// Diagram returns the transition graph as a Mermaid state diagram, generated
// by looplab/fsm from the definition the trackers' table is compiled from.
// The README's diagram is its output.
func Diagram() string { return trackcore.Diagram() }

// Hold and Release batch the wake-ups of the callbacks while the goroutine
// that reads the stream works through input it has read (see
// trackcore.Registry.Hold).
func (r *Registry) Hold() { r.core().Hold() }

// Release ends Hold (see Hold).
func (r *Registry) Release() { r.core().Release() }
