// Command responder is the receiving side of a tracked conversation: it logs
// in, prints every message it receives, answers delivery receipt requests
// (XEP-0184), and marks messages displayed (XEP-0333) after a delay, or never.
// It is the other party of the demo and of the tests of examples/send.
//
//	go run ./examples/responder -jid bob@example.org [flags]
//
// Flags:
//
//	-password-file F   password file (else the XMPP_PASSWORD environment variable)
//	-addr host:port    server address (default: from the JID's domain)
//	-display-after D   mark messages displayed after D (default 1s); negative: never
//	-no-receipts       do not answer receipt requests
//	-muc ROOM/NICK     join the room room@service as NICK (repeatable) and mark
//	                   its messages displayed too
//	-plaintext         allow login without TLS (loopback testing only)
//	-insecure          skip certificate verification (testing only)
//
// It prints "ready <our address>" once it is logged in and has joined its
// rooms, then one line per received message: the sender, the message type
// and id, and the body; and one line per file it carries (XEP-0066
// out-of-band data, as sent by send -file): the sender, "attachment", the
// message id and the URL. It runs until interrupted (SIGINT or SIGTERM), then
// leaves its rooms and logs out. Exit status 1 means a usage, connection or
// authentication error.
package main

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/stanza"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// rooms is a repeatable -muc flag.
type rooms []jid.JID

func (r *rooms) String() string { return fmt.Sprint(*r) }

func (r *rooms) Set(s string) error {
	j, err := jid.Parse(s)
	if err != nil || j.Localpart() == "" || j.Resourcepart() == "" {
		return errors.New("want room@service/nick")
	}
	*r = append(*r, j)
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("responder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		account, passwordFile, addr string
		displayAfter                time.Duration
		noReceipts, plaintext       bool
		insecure                    bool
		join                        rooms
	)
	fs.StringVar(&account, "jid", "", "our account, `user@domain`")
	fs.StringVar(&passwordFile, "password-file", "", "read the password from `file` (else $XMPP_PASSWORD)")
	fs.StringVar(&addr, "addr", "", "server address `host:port` (default: from the JID's domain)")
	fs.DurationVar(&displayAfter, "display-after", time.Second, "mark messages displayed after this delay; negative: never")
	fs.BoolVar(&noReceipts, "no-receipts", false, "do not answer receipt requests")
	fs.Var(&join, "muc", "join `room@service/nick` (repeatable)")
	fs.BoolVar(&plaintext, "plaintext", false, "allow login without TLS (loopback testing only)")
	fs.BoolVar(&insecure, "insecure", false, "skip certificate verification (testing only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "responder: "+format+"\n", a...)
		return 1
	}
	me, err := jid.Parse(account)
	switch {
	case account == "":
		return fail("missing -jid: give the account to log in as, e.g. -jid bob@example.org")
	case err != nil || me.Localpart() == "":
		return fail("-jid %q is not an account address like bob@example.org", account)
	case plaintext && insecure:
		return fail("-plaintext and -insecure exclude each other: -plaintext uses no TLS at all")
	}
	password := os.Getenv("XMPP_PASSWORD")
	if passwordFile != "" {
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return fail("cannot read the password file: %v", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if password == "" {
		return fail("no password: give -password-file FILE or set XMPP_PASSWORD")
	}

	b := &bot{ctx: ctx, out: stdout, displayAfter: displayAfter, rooms: make(map[string]*muc.Room)}
	cfg := xmpptrack.Config{
		Addr:           addr,
		AllowPlaintext: plaintext,
		NoReceipts:     noReceipts,
		Handler:        b,
		OnMessage:      b.onMessage,
	}
	if insecure {
		cfg.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	// A context that ends right after a write can break the next write
	// (mellium v0.23.0 may apply the cancellation to the connection's write
	// deadline just after the write returned): the contexts used for
	// writing end only when the program does.
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := xmpptrack.Dial(setupCtx, me, password, &cfg)
	if err != nil {
		if errors.Is(err, xmpptrack.ErrAuth) {
			return fail("cannot log in as %s: %v (check the password)", me, err)
		}
		return fail("cannot log in as %s: %v (check -addr, -plaintext or -insecure)", me, err)
	}
	var joined []*muc.Room
	defer func() {
		b.stop()
		leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, r := range joined {
			r.Leave(leaveCtx, "")
		}
		c.Close()
		cancel()
	}()
	b.setClient(c)

	for _, addr := range join {
		r, err := muc.Join(setupCtx, c, addr, nil)
		if err != nil {
			return fail("cannot join %s: %v", addr, err)
		}
		joined = append(joined, r)
		b.addRoom(r)
	}
	s, err := c.Session(ctx)
	if err != nil {
		return fail("%v", err)
	}
	b.printf("ready %s", s.LocalAddr())

	select {
	case <-ctx.Done():
	case <-c.Done():
		return fail("connection ended for good: %v", c.Err())
	}
	return 0
}

// bot handles incoming messages. Markers go out from timers, after the
// display delay.
type bot struct {
	ctx          context.Context // bounds markers to rooms; ends with the program
	out          io.Writer
	displayAfter time.Duration

	mu      sync.Mutex
	c       *xmpptrack.Client
	rooms   map[string]*muc.Room // by room address
	timers  map[*time.Timer]bool
	stopped bool
}

func (b *bot) setClient(c *xmpptrack.Client) {
	b.mu.Lock()
	b.c = c
	b.mu.Unlock()
}

func (b *bot) addRoom(r *muc.Room) {
	b.mu.Lock()
	b.rooms[r.Addr().Bare().String()] = r
	b.mu.Unlock()
}

func (b *bot) printf(format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintf(b.out, format+"\n", a...)
}

// HandleXMPP prints the error replies to what we sent; messages with
// content go to onMessage.
func (b *bot) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil
	}
	ev, err := stanza.ParseMessage(*start, t)
	if err != nil {
		return nil
	}
	if ev.Type == xstanza.ErrorMessage && ev.Error != nil {
		b.printf("error from %s for %s: %s", ev.From, ev.ID, ev.Error.Condition)
	}
	return nil
}

// onMessage prints a message, one line more for each file it carries
// (XEP-0066 out-of-band data), and schedules its displayed marker. It runs
// on a goroutine of the library, in order: it must not wait long.
func (b *bot) onMessage(c *xmpptrack.Client, m *xmpptrack.Incoming) {
	if m.Body == "" && len(m.Attachments) == 0 {
		return // a subject
	}
	note := ""
	if !m.Delay.IsZero() {
		note = " (delayed)"
	}
	if m.Body != "" {
		b.printf("%s %s %s%s: %s", m.From, m.Type, m.ID, note, m.Body)
	}
	for _, a := range m.Attachments {
		if a.Desc != "" {
			b.printf("%s attachment %s: %s (%s)", m.From, m.ID, a.URL, a.Desc)
		} else {
			b.printf("%s attachment %s: %s", m.From, m.ID, a.URL)
		}
	}
	if b.displayAfter < 0 {
		return
	}
	if m.Type == xstanza.GroupChatMessage {
		b.mu.Lock()
		r := b.rooms[m.Room.String()]
		b.mu.Unlock()
		if r == nil {
			return // a room we are joining right now: its history
		}
		b.after(func() { r.MarkDisplayed(b.ctx) })
		return
	}
	// The conversation of m: its sender's, or, for a private message from a
	// room's occupant, that occupant's (MarkDisplayed(m.From) would mark
	// the room, which shares the occupant's address).
	b.after(func() { c.MarkConversation(m) })
}

// after runs f after the display delay on its own goroutine.
func (b *bot) after(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	if b.timers == nil {
		b.timers = make(map[*time.Timer]bool)
	}
	var t *time.Timer
	t = time.AfterFunc(b.displayAfter, func() {
		b.mu.Lock()
		delete(b.timers, t)
		stopped := b.stopped
		b.mu.Unlock()
		if !stopped {
			f()
		}
	})
	b.timers[t] = true
}

// stop cancels pending markers.
func (b *bot) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	for t := range b.timers {
		t.Stop()
	}
}

var _ xmpp.Handler = (*bot)(nil)
