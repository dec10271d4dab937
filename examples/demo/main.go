// Command demo shows tracked XMPP messages on a throwaway Prosody server.
//
//	go run ./examples/demo
//
// It installs Prosody with apt-get when it is missing and the demo runs as
// root (otherwise it prints the command to run), starts it on a random
// loopback port in a temporary directory, creates the accounts alice, bob and
// carol, and narrates four messages from alice:
//
//  1. to bob, who is online: IN_TRANSIT → DELIVERED_TO_SERVER →
//     DELIVERED_TO_RECIPIENT → SEEN_BY_RECIPIENT;
//  2. to an account that does not exist: ERROR with the server's condition;
//  3. to carol, who is offline: the server takes it, then the tracking window
//     ends (TIMED_OUT);
//  4. to a group chat that bob is in: reflected by the room, then seen by bob.
//
// Then it stops the server and removes its files. It takes about five
// seconds. SIGINT or SIGTERM (Ctrl-C) stops it early, and the server is
// stopped and its files removed all the same. Exit status 1 means the demo
// could not run, was interrupted, or a step did not happen as narrated; 2 a
// usage error.
//
// Flags:
//
//	-port N   the server's client port on 127.0.0.1 (default: a free random one)
//	-h        print this usage and exit
package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Timings of the scenario.
const (
	readingTime   = 300 * time.Millisecond // bob reads a message this long after it arrives
	offlineWindow = 3 * time.Second        // tracking window of the message to offline carol
	stepTimeout   = 15 * time.Second       // a step that takes longer failed
)

// stopGrace is how long an interrupted demo waits for its steps to end
// before it stops the server itself.
const stopGrace = 5 * time.Second

func main() {
	port, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var live atomic.Pointer[testserver.Server]
	done := make(chan error, 1)
	go func() { done <- run(ctx, os.Stdout, port, &live) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Interrupted: the steps end on ctx, and run stops the server. In
		// case one does not, the server is stopped here all the same.
		select {
		case err = <-done:
		case <-time.After(stopGrace):
			if srv := live.Load(); srv != nil {
				srv.Stop()
			}
		}
	}
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "demo: interrupted")
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// parse reads the command line: the port, 0 for a random one.
func parse(args []string, stderr io.Writer) (port int, err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: demo [-port N]")
		fmt.Fprintln(fs.Output(), "Runs a throwaway Prosody on 127.0.0.1 and narrates four tracked messages.")
		fs.PrintDefaults()
	}
	fs.IntVar(&port, "port", 0, "the server's client port on 127.0.0.1 (0: a free random one)")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 || port < 0 || port > 65535 {
		fs.Usage()
		return 0, errors.New("bad usage")
	}
	return port, nil
}

// run runs the demo; live holds the server while it runs.
func run(ctx context.Context, w io.Writer, port int, live *atomic.Pointer[testserver.Server]) error {
	if err := ensureProsody(w, systemInstaller()); err != nil {
		return err
	}
	fmt.Fprintln(w, "xmpptrack demo: tracked XMPP messages on a throwaway Prosody server")
	fmt.Fprintln(w)

	srv, err := testserver.Launch(ctx, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "bob", "carol"}, Port: port})
	if err != nil {
		return fmt.Errorf("starting Prosody: %w", err)
	}
	live.Store(srv)
	dir := srv.Dir()
	defer func() {
		srv.Stop()
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(w, "\nStopped Prosody and removed %s.\n", dir)
		} else {
			fmt.Fprintf(w, "\nStopped Prosody; could not remove %s.\n", dir)
		}
	}()

	d := &demo{w: w, srv: srv, events: make(chan event, 256), ctx: ctx}
	fmt.Fprintf(w, "  server  Prosody on %s, files in %s (up in %.1f s)\n", srv.Addr(), dir, srv.StartupTime().Seconds())
	fmt.Fprintf(w, "  alice   %-18s sends every message below\n", srv.JID("alice"))
	fmt.Fprintf(w, "  bob     %-18s online; answers receipts; reads each message after %v\n", srv.JID("bob"), readingTime)
	fmt.Fprintf(w, "  carol   %-18s exists, but is offline\n", srv.JID("carol"))
	fmt.Fprintf(w, "  nobody  %-18s does not exist\n", "nobody@"+srv.Domain())

	setupCtx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel() // after d.close: see connect
	if err := d.connect(setupCtx); err != nil {
		return err
	}
	defer d.close()
	steps := []func(context.Context) error{d.oneToOne, d.nonexistent, d.offline, d.groupChat}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each state is proof seen on the wire; TIMED_OUT and ERROR say what was not proved.")
	return nil
}

// installer is what ensureProsody needs from the system; tests replace it.
type installer struct {
	available func() error // nil when Prosody can be started
	root      bool
	aptGet    func(args ...string) (output []byte, err error) // runs apt-get; nil when it is missing
}

func systemInstaller() installer {
	in := installer{
		available: func() error { return testserver.Available(testserver.Prosody) },
		root:      os.Geteuid() == 0,
	}
	if _, err := exec.LookPath("apt-get"); err == nil {
		in.aptGet = func(args ...string) ([]byte, error) {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.CombinedOutput()
		}
	}
	return in
}

// installCommand is what a user who is not root runs.
const installCommand = "sudo apt-get install -y prosody"

// ensureProsody installs Prosody when it is missing, as root; otherwise it
// says how to. The installation prints one line; apt-get's output is shown
// only when it fails.
func ensureProsody(w io.Writer, in installer) error {
	if in.available() == nil {
		return nil
	}
	switch {
	case !in.root:
		return fmt.Errorf("Prosody is not installed; install it with:\n\n    %s\n\nthen run the demo again", installCommand)
	case in.aptGet == nil:
		return errors.New("Prosody is not installed and apt-get is missing: install Prosody 0.12 or later with your package manager")
	}
	fmt.Fprintln(w, "installing prosody with apt-get ... (Debian also starts its own Prosody service on *:5222; the demo does not use it)")
	aptGet := func(args ...string) error {
		if out, err := in.aptGet(args...); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if aptGet("install", "-y", "prosody") != nil {
		// A fresh machine may have no package lists yet.
		if err := aptGet("update"); err != nil {
			return err
		}
		if err := aptGet("install", "-y", "prosody"); err != nil {
			return err
		}
	}
	if err := in.available(); err != nil {
		return fmt.Errorf("Prosody still not found after installing it: %w", err)
	}
	return nil
}

// event is one state change, timed when the client reported it.
type event struct {
	id   string
	to   tracking.MessageState
	resp *tracking.Response
	at   time.Time
}

type demo struct {
	w      io.Writer
	srv    *testserver.Server
	events chan event

	alice, bob *xmpptrack.Client
	mu         sync.Mutex
	bobRoom    *muc.Room
	aliceRoom  *muc.Room
	ctx        context.Context // the demo's; bounds bob's markers to the room
}

// connect logs alice and bob in. ctx must not end before the demo does:
// mellium v0.23.0 may apply a context's end to the connection's write
// deadline just after a write returned, which breaks the next write.
func (d *demo) connect(ctx context.Context) error {
	var err error
	d.alice, err = d.dial(ctx, "alice", xmpptrack.Config{
		OnStateChange: func(t *tracking.MessageTracker, _, to tracking.MessageState, resp *tracking.Response) {
			select {
			case d.events <- event{id: t.ID(), to: to, resp: resp, at: time.Now()}:
			default: // nobody is listening any more
			}
		},
		// Ask the server to acknowledge each message at once (the default
		// batches acks over up to 10 ms), so that its ack shows before
		// bob's receipt.
		StreamManagement: sm.Config{AckEvery: 1},
	})
	if err != nil {
		return err
	}
	d.bob, err = d.dial(ctx, "bob", xmpptrack.Config{Handler: xmpp.HandlerFunc(d.bobReads)})
	return err
}

func (d *demo) dial(ctx context.Context, local string, cfg xmpptrack.Config) (*xmpptrack.Client, error) {
	cfg.Addr = d.srv.Addr()
	cfg.TLSConfig = d.srv.TLSConfig() // STARTTLS, verified against the server's own certificate
	c, err := xmpptrack.Dial(ctx, d.srv.JID(local), d.srv.Password(local), &cfg)
	if err != nil {
		return nil, fmt.Errorf("logging in as %s: %w", local, err)
	}
	return c, nil
}

func (d *demo) close() {
	d.mu.Lock()
	rooms := []*muc.Room{d.aliceRoom, d.bobRoom}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel() // after Close: see connect
	for _, r := range rooms {
		if r != nil {
			r.Leave(ctx, "")
		}
	}
	if d.bob != nil {
		d.bob.Close()
	}
	d.alice.Close()
}

// bobReads is bob's handler: every message with a body is "read" after
// readingTime, which sends a displayed marker.
func (d *demo) bobReads(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil
	}
	ev, err := stanza.ParseMessage(*start, t)
	if err != nil || ev.Body == "" || ev.Carbon != stanza.CarbonNone {
		return nil
	}
	from := ev.From
	if ev.Type == xstanza.GroupChatMessage {
		d.mu.Lock()
		r := d.bobRoom
		d.mu.Unlock()
		if r != nil {
			time.AfterFunc(readingTime, func() { r.MarkDisplayed(d.ctx) })
		}
		return nil
	}
	// The conversation the message belongs to: an occupant's private
	// message is marked to the occupant, never as the room's.
	m := &xmpptrack.Incoming{From: from, Type: ev.Type}
	time.AfterFunc(readingTime, func() { d.bob.MarkConversation(m) })
	return nil
}

// explain says what a state proves in one step of the demo.
type explain map[tracking.MessageState]string

// follow prints the state changes of the message sent by send until stop
// says it is over, with the time since sending and the step's explanation.
func (d *demo) follow(ctx context.Context, title string, ex explain, send func(ctx context.Context, id string) (*tracking.MessageTracker, error), stop func(tracking.MessageState) bool) (*tracking.MessageTracker, error) {
	fmt.Fprintf(d.w, "\n%s\n", title)
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	id := xmpptrack.NewID()
	start := time.Now()
	d.line(0, tracking.InTransit, ex[tracking.InTransit])
	t, err := send(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("sending: %w", err)
	}
	for {
		select {
		case ev := <-d.events:
			if ev.id != id {
				continue
			}
			text := ex[ev.to]
			if ev.to == tracking.Error && ev.resp != nil {
				text = fmt.Sprintf(text, errorSummary(ev.resp.Err))
			}
			d.line(ev.at.Sub(start), ev.to, text)
			if stop(ev.to) {
				return t, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: stuck in %s: %w", title, t.State(), ctx.Err())
		}
	}
}

func (d *demo) line(elapsed time.Duration, st tracking.MessageState, text string) {
	fmt.Fprintf(d.w, "  %10s  %-22s  %s\n", fmtElapsed(elapsed), st, text)
}

func fmtElapsed(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// errorSummary names the condition and the stanza package's sentinel.
func errorSummary(err error) string {
	var de *stanza.DeliveryError
	if !errors.As(err, &de) {
		return fmt.Sprint(err)
	}
	kind := "no definite meaning"
	for _, k := range []struct {
		err  error
		name string
	}{
		{stanza.ErrOffline, "stanza.ErrOffline"},
		{stanza.ErrNotAvailable, "stanza.ErrNotAvailable"},
		{stanza.ErrPermissionDenied, "stanza.ErrPermissionDenied"},
		{stanza.ErrInvalidHandle, "stanza.ErrInvalidHandle"},
		{stanza.ErrNotImplemented, "stanza.ErrNotImplemented"},
		{stanza.ErrNetwork, "stanza.ErrNetwork"},
	} {
		if errors.Is(err, k.err) {
			kind = k.name
		}
	}
	return fmt.Sprintf("%s = %s", de.Stanza.Condition, kind)
}

func is(want tracking.MessageState) func(tracking.MessageState) bool {
	return func(s tracking.MessageState) bool { return s == want }
}

func (d *demo) oneToOne(ctx context.Context) error {
	bob := d.srv.JID("bob")
	_, err := d.follow(ctx, "1. alice → bob, who is online", explain{
		tracking.InTransit:            "written to alice's connection; nothing proved yet",
		tracking.DeliveredToServer:    "alice's server acked it (XEP-0198); bob may not have it yet",
		tracking.DeliveredToRecipient: "bob's client sent a receipt (XEP-0184); not read yet",
		tracking.SeenByRecipient:      "bob's client sent a displayed marker (XEP-0333): bob saw it",
	}, func(ctx context.Context, id string) (*tracking.MessageTracker, error) {
		return d.alice.Send(ctx, xmpptrack.Message{ID: id, To: bob, Body: "Deploy finished, please check."})
	}, is(tracking.SeenByRecipient))
	return err
}

func (d *demo) nonexistent(ctx context.Context) error {
	nobody := jid.MustParse("nobody@" + d.srv.Domain())
	_, err := d.follow(ctx, "2. alice → nobody@"+d.srv.Domain()+", an account that does not exist", explain{
		tracking.InTransit:         "written to alice's connection; nothing proved yet",
		tracking.DeliveredToServer: "the server handled it (XEP-0198); a bounce may follow",
		tracking.Error:             "bounced: %s",
	}, func(ctx context.Context, id string) (*tracking.MessageTracker, error) {
		return d.alice.Send(ctx, xmpptrack.Message{ID: id, To: nobody, Body: "Anyone there?"})
	}, is(tracking.Error))
	return err
}

func (d *demo) offline(ctx context.Context) error {
	carol := d.srv.JID("carol")
	_, err := d.follow(ctx, fmt.Sprintf("3. alice → carol, who is offline (tracking window %v)", offlineWindow), explain{
		tracking.InTransit:         "written to alice's connection; nothing proved yet",
		tracking.DeliveredToServer: "the server took it and keeps it for carol",
		tracking.TimedOut:          "no proof within the window; carol may still get it later",
	}, func(ctx context.Context, id string) (*tracking.MessageTracker, error) {
		return d.alice.Send(ctx, xmpptrack.Message{ID: id, To: carol, Body: "See you tomorrow.", Window: offlineWindow})
	}, is(tracking.TimedOut))
	return err
}

func (d *demo) groupChat(ctx context.Context) error {
	room := jid.MustParse("standup@" + d.srv.MUCDomain())
	joinCtx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	bobRoom, err := muc.Join(joinCtx, d.bob, must(room.WithResource("bob")), nil)
	if err != nil {
		return fmt.Errorf("bob joining %s: %w", room, err)
	}
	d.mu.Lock()
	d.bobRoom = bobRoom
	d.mu.Unlock()
	aliceRoom, err := muc.Join(joinCtx, d.alice, must(room.WithResource("alice")), nil)
	if err != nil {
		return fmt.Errorf("alice joining %s: %w", room, err)
	}
	d.mu.Lock()
	d.aliceRoom = aliceRoom
	d.mu.Unlock()

	t, err := d.follow(ctx, "4. alice → the group chat "+room.String()+", where bob is", explain{
		tracking.InTransit:            "written to alice's connection; nothing proved yet",
		tracking.DeliveredToServer:    "alice's server acked it (XEP-0198)",
		tracking.DeliveredToRecipient: "the room reflected it: it accepted and distributed it",
		tracking.SeenByRecipient:      "an occupant sent a displayed marker (XEP-0333)",
	}, func(ctx context.Context, id string) (*tracking.MessageTracker, error) {
		return aliceRoom.SendMessage(ctx, xmpptrack.Message{ID: id, Body: "Stand-up in five minutes."})
	}, is(tracking.SeenByRecipient))
	if err != nil {
		return err
	}
	who := fmt.Sprintf("%d occupant(s)", len(aliceRoom.SeenBy(t)))
	if resp := t.Response(); resp != nil {
		who += "; the marker came from " + resp.From.String()
	}
	fmt.Fprintf(d.w, "  %10s  seen by %s\n", "", who)
	return nil
}

func must(j jid.JID, err error) jid.JID {
	if err != nil {
		panic(err)
	}
	return j
}
