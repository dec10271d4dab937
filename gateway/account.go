package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/tracking"
)

var jidZero jid.JID

// Account is one XMPP account the gateway sends from.
type Account struct {
	// JID is the account's address; requests name it in "from".
	JID jid.JID
	// Client is the account's logged-in client. Its Config.OnStateChange
	// must call Gateway.OnStateChange, else the gateway records only the
	// first state of each message.
	Client *xmpptrack.Client
	// Nick is the nick the gateway joins group chats with. Empty means the
	// JID's local part.
	Nick string
}

// sender is what the gateway needs from an account: sending, the readers
// of a room message, and whether it is connected. Tests replace it.
type sender interface {
	send(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error)
	seenBy(t *tracking.MessageTracker) []string
	ready(ctx context.Context) error
	health() health
}

// AddAccount adds an account. The first one added is the default for
// requests without "from".
func (g *Gateway) AddAccount(a Account) error {
	if a.Client == nil || a.JID.Equal(jidZero) {
		return errors.New("gateway: an account needs a JID and a client")
	}
	if a.Nick == "" {
		a.Nick = a.JID.Localpart()
	}
	return g.addSender(a.JID.Bare().String(), &clientSender{a: a, rooms: make(map[string]*roomJoin)})
}

func (g *Gateway) addSender(name string, s sender) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.accounts()
	if _, dup := old.m[name]; dup {
		return fmt.Errorf("gateway: account %s added twice", name)
	}
	a := &accountSet{first: old.first, m: make(map[string]sender, len(old.m)+1)}
	maps.Copy(a.m, old.m)
	a.m[name] = s
	if a.first == "" {
		a.first = name
	}
	g.accts.Store(a)
	g.metrics.addAccount(name, s)
	return nil
}

// accounts returns the accounts (none before the first AddAccount).
func (g *Gateway) accounts() *accountSet {
	if a := g.accts.Load(); a != nil {
		return a
	}
	return &accountSet{}
}

// accountSet is the gateway's accounts; never modified once published
// (AddAccount publishes a new one), so that requests read it without a
// lock.
type accountSet struct {
	m     map[string]sender // by bare JID
	first string            // the default account
}

// clientSender sends through an xmpptrack.Client, joining rooms on first use.
type clientSender struct {
	a Account

	mu    sync.Mutex
	rooms map[string]*roomJoin // by room bare JID
}

func (c *clientSender) health() health {
	st := c.a.Client.Stats()
	return health{connected: st.Connected, reconnections: st.Reconnections, resumptions: st.Resumptions}
}

type roomJoin struct {
	done chan struct{} // closed when the join attempt ended
	room *muc.Room
	err  error
}

func (c *clientSender) send(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	if m.Type != xstanza.GroupChatMessage {
		return c.a.Client.Send(ctx, m)
	}
	r, err := c.room(ctx, m.To)
	if err != nil {
		return nil, err
	}
	return r.SendMessage(ctx, m)
}

// room returns the joined room, joining it (again, after we left or were
// kicked) when needed. Concurrent senders share one join.
func (c *clientSender) room(ctx context.Context, addr jid.JID) (*muc.Room, error) {
	key := addr.Bare().String()
	c.mu.Lock()
	j := c.rooms[key]
	if j != nil {
		select {
		case <-j.done:
			if j.err != nil || isDone(j.room.Done()) {
				j = nil
			}
		default:
		}
	}
	if j == nil {
		j = &roomJoin{done: make(chan struct{})}
		c.rooms[key] = j
		go func() {
			defer close(j.done)
			full, err := addr.Bare().WithResource(c.a.Nick)
			if err != nil {
				j.err = err
				return
			}
			// The join outlives the request that started it: other senders
			// wait for it too.
			jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), joinTimeout)
			defer cancel()
			j.room, j.err = muc.Join(jctx, c.a.Client, full, nil)
		}()
	}
	c.mu.Unlock()
	select {
	case <-j.done:
		return j.room, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *clientSender) seenBy(t *tracking.MessageTracker) []string {
	c.mu.Lock()
	j := c.rooms[t.To()]
	c.mu.Unlock()
	if j == nil || !isDone(j.done) || j.room == nil {
		return nil
	}
	var nicks []string
	for _, o := range j.room.SeenBy(t) {
		nicks = append(nicks, o.Nick)
	}
	return nicks
}

func (c *clientSender) ready(ctx context.Context) error {
	select {
	case <-c.a.Client.Done():
		if err := c.a.Client.Err(); err != nil {
			return err
		}
		return xmpptrack.ErrClientClosed
	default:
	}
	if !c.a.Client.Stats().Connected {
		return errNotConnected
	}
	return nil
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
