// Command send sends tracked XMPP messages and prints every state change of
// each one.
//
//	go run ./examples/send -jid alice@example.org -to bob@example.org [flags] [message text]
//
// Without message text or -file it sends each line of standard input as its own
// message, in order, without waiting for the previous one. It prints one
// line per state change of each message (elapsed time since that message was
// sent, its id, the state; for IN_TRANSIT the start of the text, quoted, so
// that each id can be matched to its line of input; for ERROR the condition
// and text), or with -json
// one JSON object per line with the fields id, to, state, elapsed_ms and, for
// ERROR, condition and error.
//
// With -muc, it joins the room first and says on standard error how many
// other occupants are there (in an empty room, messages still reach
// DELIVERED_TO_RECIPIENT: the room distributed them, to nobody). The
// SEEN_BY_RECIPIENT line names who has seen the message ("by bob, carol"),
// and in -json its seen_by field is the array of their nicks. A room
// address without -muc, or -muc with a person's address, fails with a hint.
//
// Flags:
//
//	-password-file F   password file (else the XMPP_PASSWORD environment variable)
//	-addr host:port    server address (default: from the JID's domain)
//	-muc NICK          -to is a room: join it as NICK, send, leave
//	-wait STATE        server | delivered | seen   (default delivered)
//	-timeout D         tracking window, a Go duration (default 30s); it also bounds logging in
//	-plaintext         allow login without TLS (loopback testing only)
//	-insecure          skip certificate verification (testing only)
//	-json              print JSON lines instead of text
//	-file PATH         send a file (repeatable); see below
//
// With -file, each file is uploaded through the server's HTTP File Upload
// service (XEP-0363) and sent as a message whose body is its download URL
// (with XEP-0066 out-of-band data, so clients show it inline); message text,
// if given, follows as a caption. Every file is uploaded before anything is
// sent: a failed upload sends nothing. On a terminal a progress bar is drawn on
// standard error; with -json progress events are printed as JSON lines with
// the fields file, sent, size and, once uploaded, url.
//
// Exit status: 0 when every message reached the -wait state; 2 when any did
// not (ERROR, ABORTED, TIMED_OUT, CLOSED, or tracking ended short of it); 1
// for usage, connection and authentication errors, with a one-line message on
// standard error that says what to fix.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/attach"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFailed   = 1 // usage, connection, authentication
	exitNotThere = 2 // a message did not reach the -wait state
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	account, to  jid.JID
	password     string
	addr         string
	nick         string
	wait         tracking.MessageState
	timeout      time.Duration
	plaintext    bool
	insecure     bool
	json         bool
	text         string
	hasText      bool
	passwordFile string
	files        []string
}

var waitStates = map[string]tracking.MessageState{
	"server":    tracking.DeliveredToServer,
	"delivered": tracking.DeliveredToRecipient,
	"seen":      tracking.SeenByRecipient,
}

// usageError is a command-line mistake: exit status 1 with the message.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func parse(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: send -jid alice@example.org -to bob@example.org [flags] [message text]")
		fmt.Fprintln(fs.Output(), "Without message text, each line of standard input is sent as its own message.")
		fs.PrintDefaults()
	}
	var o options
	var account, to, wait string
	fs.StringVar(&account, "jid", "", "our account, `user@domain`")
	fs.StringVar(&to, "to", "", "the recipient, or the room with -muc")
	fs.StringVar(&o.passwordFile, "password-file", "", "read the password from `file` (else $XMPP_PASSWORD)")
	fs.StringVar(&o.addr, "addr", "", "server address `host:port` (default: from the JID's domain)")
	fs.StringVar(&o.nick, "muc", "", "-to is a room: join it as `nick`, send, leave")
	fs.StringVar(&wait, "wait", "delivered", "the state to wait for: server | delivered | seen")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "tracking window; also bounds logging in")
	fs.BoolVar(&o.plaintext, "plaintext", false, "allow login without TLS (loopback testing only)")
	fs.BoolVar(&o.insecure, "insecure", false, "skip certificate verification (testing only)")
	fs.BoolVar(&o.json, "json", false, "print JSON lines instead of text")
	fs.Func("file", "send the file at `path` (repeatable); message text becomes its caption", func(s string) error {
		o.files = append(o.files, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}

	var err error
	switch {
	case account == "":
		return nil, usageError{"missing -jid: give the account to send from, e.g. -jid alice@example.org"}
	case to == "":
		return nil, usageError{"missing -to: give the recipient (or the room with -muc), e.g. -to bob@example.org"}
	case o.plaintext && o.insecure:
		return nil, usageError{"-plaintext and -insecure exclude each other: -plaintext uses no TLS at all"}
	case o.timeout <= 0:
		return nil, usageError{"-timeout must be positive, e.g. -timeout 30s"}
	}
	if o.account, err = jid.Parse(account); err != nil || o.account.Localpart() == "" {
		return nil, usageError{fmt.Sprintf("-jid %q is not an account address like alice@example.org", account)}
	}
	if o.to, err = jid.Parse(to); err != nil {
		return nil, usageError{fmt.Sprintf("-to %q is not a valid address: %v", to, err)}
	}
	if o.nick != "" && o.to.Resourcepart() != "" {
		return nil, usageError{"with -muc, give -to as the bare room address room@service; the nick goes in -muc"}
	}
	var ok bool
	if o.wait, ok = waitStates[strings.ToLower(wait)]; !ok {
		return nil, usageError{fmt.Sprintf("-wait %q: use server, delivered or seen", wait)}
	}
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return nil, usageError{fmt.Sprintf("cannot read the password file: %v", err)}
		}
		o.password = strings.TrimRight(string(b), "\r\n")
	} else {
		o.password = os.Getenv("XMPP_PASSWORD")
	}
	if o.password == "" {
		return nil, usageError{"no password: give -password-file FILE or set XMPP_PASSWORD"}
	}
	if fs.NArg() > 0 {
		o.text, o.hasText = strings.Join(fs.Args(), " "), true
	}
	return &o, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "send:", ue.msg)
		}
		return exitFailed
	}

	p := newPrinter(stdout, o.json)
	cfg := xmpptrack.Config{
		Addr:           o.addr,
		AllowPlaintext: o.plaintext,
		Window:         o.timeout,
		OnStateChange:  p.change,
		// One ack request per message: DELIVERED_TO_SERVER shows at once.
		StreamManagement: sm.Config{AckEvery: 1},
	}
	if o.insecure {
		cfg.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	// A context that ends right after a write can break the next write:
	// mellium v0.23.0 may apply its cancellation to the connection's write
	// deadline just after the write returned. So the contexts of logging
	// in, joining and leaving end only when the program does.
	setupCtx, cancelSetup := context.WithTimeout(ctx, o.timeout)
	defer cancelSetup()
	c, err := xmpptrack.Dial(setupCtx, o.account, o.password, &cfg)
	if err != nil {
		fmt.Fprintln(stderr, "send:", explainDial(o, err))
		return exitFailed
	}
	var room *muc.Room
	defer func() {
		leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 5*time.Second)
		if room != nil {
			room.Leave(leaveCtx, "")
		}
		c.Close()
		cancelLeave() // after Close: see above
	}()

	// send writes one message; it returns its tracker (nil if it was never
	// sent) and the error.
	send := func(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
		m.To = o.to
		return c.Send(ctx, m)
	}
	if o.nick != "" {
		addr, err := o.to.WithResource(o.nick)
		if err != nil {
			fmt.Fprintf(stderr, "send: -muc %q is not a valid nick: %v\n", o.nick, err)
			return exitFailed
		}
		r, err := muc.Join(setupCtx, c, addr, nil)
		if errors.Is(err, muc.ErrNotARoom) {
			fmt.Fprintf(stderr, "send: cannot join %s: %v (-muc needs a room address room@service; without -muc, -to is a person)\n", o.to, err)
			return exitFailed
		}
		if err != nil {
			fmt.Fprintf(stderr, "send: cannot join %s as %s: %v (check -to and -muc)\n", o.to, o.nick, err)
			return exitFailed
		}
		room = r
		p.room(r)
		fmt.Fprintln(stderr, "send:", joined(r))
		send = r.SendMessage
	}

	// Sending to a room without -muc fails: find out meanwhile whether -to
	// is a room, to say so if it does.
	isRoom := make(chan bool, 1)
	if o.nick == "" && o.to.Localpart() != "" && o.to.Resourcepart() == "" {
		go func() {
			ok, _ := muc.IsRoom(setupCtx, c, o.to)
			isRoom <- ok
		}()
	} else {
		isRoom <- false
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		missed  []string // one line per message that did not reach the -wait state
		sendErr error
	)
	sendOne := func(m xmpptrack.Message) bool {
		id := xmpptrack.NewID()
		m.ID = id
		p.start(id, o.to.String(), m.Body)
		t, err := send(ctx, m)
		if t == nil {
			// Never tracked: report it as aborted, as the library would.
			p.synthetic(id, tracking.Aborted, err)
			mu.Lock()
			missed = append(missed, fmt.Sprintf("%s: not sent: %v", id, err))
			sendErr = err
			mu.Unlock()
			p.finish(id, tracking.Aborted)
			return false
		}
		wg.Go(func() {
			st, err := t.Wait(ctx, o.wait)
			p.finish(id, st)
			if err != nil {
				mu.Lock()
				missed = append(missed, fmt.Sprintf("%s: %s, not %s: %v%s", id, st, o.wait, err, missedHint(o, err)))
				mu.Unlock()
			}
		})
		return true
	}

	// Files first, every one uploaded before anything is sent.
	urls, err := uploadFiles(ctx, o, c, cfg.TLSConfig, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "send:", err)
		return exitFailed
	}
	for _, u := range urls {
		if !sendOne(attach.Message(u)) {
			break
		}
	}
	if o.hasText {
		sendOne(xmpptrack.Message{Body: o.text})
	} else if len(o.files) == 0 {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() && ctx.Err() == nil {
			if line := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(line) != "" {
				if !sendOne(xmpptrack.Message{Body: line}) {
					break
				}
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintln(stderr, "send: reading standard input:", err)
		}
	}
	wg.Wait()
	p.stop() // later changes (CLOSED on disconnect) are not printed

	if len(missed) == 0 {
		return exitOK
	}
	for _, m := range missed {
		fmt.Fprintln(stderr, "send:", m)
	}
	if <-isRoom {
		fmt.Fprintf(stderr, "send: %s is a group chat: is this a room? use -muc NICK\n", o.to)
	}
	if sendErr != nil && errors.Is(sendErr, xmpptrack.ErrClientClosed) {
		fmt.Fprintln(stderr, "send: the connection ended for good:", c.Err())
	}
	return exitNotThere
}

// joined says who else is in the room we joined.
func joined(r *muc.Room) string {
	others := r.Occupants()
	var nicks []string
	for _, o := range others {
		nicks = append(nicks, o.Nick)
	}
	switch len(others) {
	case 0:
		return fmt.Sprintf("joined %s alone: messages reach DELIVERED_TO_RECIPIENT (the room distributed them) but nobody is there to read them", r.Addr())
	case 1:
		return fmt.Sprintf("joined %s with 1 other occupant: %s", r.Addr(), nicks[0])
	case 2, 3, 4, 5:
		return fmt.Sprintf("joined %s with %d other occupants: %s", r.Addr(), len(others), strings.Join(nicks, ", "))
	}
	return fmt.Sprintf("joined %s with %d other occupants", r.Addr(), len(others))
}

// explainDial turns a login failure into a line that says what to fix.
func explainDial(o *options, err error) string {
	var (
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		dnsErr  *net.DNSError
	)
	where := o.addr
	if where == "" {
		where = o.account.Domainpart()
	}
	switch {
	case errors.Is(err, xmpptrack.ErrAuth):
		return fmt.Sprintf("cannot log in as %s: %v (check the password in -password-file or XMPP_PASSWORD)", o.account, err)
	case errors.Is(err, xmpptrack.ErrNoTLS):
		return fmt.Sprintf("%s offers no TLS: %v (for a loopback test server, use -plaintext)", where, err)
	case errors.As(err, &certErr), errors.As(err, &unknown):
		return fmt.Sprintf("the certificate of %s is not trusted: %v (fix the server's certificate; -insecure skips the check for testing only)", where, err)
	case errors.Is(err, xmpptrack.ErrNotXMPP):
		return fmt.Sprintf("%s does not speak XMPP: %v (check the port in -addr: XMPP clients use 5222)", where, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("logging in to %s took longer than -timeout %v (check -addr and that the server runs)", where, o.timeout)
	case errors.As(err, &dnsErr) && o.addr != "":
		return fmt.Sprintf("cannot resolve %s, the host of -addr: %v (check the -addr host)", dnsErr.Name, err)
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot find the server of %s: %v (give its address with -addr host:port)", o.account.Domainpart(), err)
	case errors.Is(err, xmpptrack.ErrConnect):
		return fmt.Sprintf("cannot connect to %s: %v (check -addr and that the server runs)", where, err)
	}
	return fmt.Sprintf("cannot log in to %s as %s: %v", where, o.account, err)
}

// missedHint says what a failure to deliver may mean, or "".
func missedHint(o *options, err error) string {
	var de *stanza.DeliveryError
	if o.nick == "" && o.to.Resourcepart() == "" && errors.As(err, &de) && de.Stanza.Condition == xstanza.ServiceUnavailable {
		return fmt.Sprintf(" (service-unavailable for a bare JID: the account %s may not exist)", o.to)
	}
	return ""
}

// printer prints state changes, one line each, and knows when every change
// up to a message's final state has been printed.
type printer struct {
	w    io.Writer
	json bool

	mu      sync.Mutex
	changed *sync.Cond
	msgs    map[string]*message
	stopped bool
	seenBy  func(*tracking.MessageTracker) []string // -muc: the readers' nicks
}

// message is what the printer knows of one message.
type message struct {
	to      string
	start   time.Time
	preview string // the start of the body, quoted, for the IN_TRANSIT line
	printed uint16 // bit i: state i was printed
	done    bool   // waiting ended; print nothing more
}

// line is one output line in -json form.
type line struct {
	ID        string   `json:"id"`
	To        string   `json:"to"`
	State     string   `json:"state"`
	ElapsedMS float64  `json:"elapsed_ms"`
	Condition string   `json:"condition,omitempty"`
	Error     string   `json:"error,omitempty"`
	SeenBy    []string `json:"seen_by,omitempty"` // -muc: nicks of the readers
}

func newPrinter(w io.Writer, json bool) *printer {
	p := &printer{w: w, json: json, msgs: make(map[string]*message)}
	p.changed = sync.NewCond(&p.mu)
	return p
}

// start records that a message is about to be sent and prints IN_TRANSIT;
// in text mode with the start of its body, so that each id can be matched
// to its line of input.
func (p *printer) start(id, to, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := &message{to: to, start: time.Now(), preview: preview(body)}
	p.msgs[id] = m
	p.print(id, m, tracking.InTransit, 0, nil, nil)
}

// previewLen is how many characters of a body the IN_TRANSIT line shows.
const previewLen = 40

// preview quotes the start of a body.
func preview(body string) string {
	r := []rune(body)
	if len(r) > previewLen {
		return strconv.Quote(string(r[:previewLen])) + "..."
	}
	return strconv.Quote(body)
}

// change is the client's OnStateChange hook.
func (p *printer) change(t *tracking.MessageTracker, _, to tracking.MessageState, resp *tracking.Response) {
	var err error
	if resp != nil {
		err = resp.Err
	}
	var who []string
	if to == tracking.SeenByRecipient {
		p.mu.Lock()
		seenBy := p.seenBy
		p.mu.Unlock()
		if seenBy != nil {
			who = seenBy(t)
		}
	}
	p.record(t.ID(), to, err, who...)
}

// room makes SEEN lines name the room's readers.
func (p *printer) room(r *muc.Room) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seenBy = func(t *tracking.MessageTracker) []string {
		var nicks []string
		for _, o := range r.SeenBy(t) {
			nicks = append(nicks, o.Nick)
		}
		return nicks
	}
}

// synthetic prints a state for a message the library never tracked.
func (p *printer) synthetic(id string, st tracking.MessageState, err error) {
	p.record(id, st, err)
}

func (p *printer) record(id string, st tracking.MessageState, err error, seenBy ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.msgs[id]
	if m == nil || m.done || p.stopped {
		return
	}
	p.print(id, m, st, time.Since(m.start), err, seenBy)
	m.printed |= 1 << st
	p.changed.Broadcast()
}

// finish waits until the message's state st has been printed (the hook runs
// on another goroutine), then stops printing for it.
func (p *printer) finish(id string, st tracking.MessageState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.msgs[id]
	for st != tracking.InTransit && m.printed&(1<<st) == 0 && !p.stopped {
		p.changed.Wait()
	}
	m.done = true
}

// stop ends all printing.
func (p *printer) stop() {
	p.mu.Lock()
	p.stopped = true
	p.changed.Broadcast()
	p.mu.Unlock()
}

// print writes one line. The caller holds p.mu.
func (p *printer) print(id string, m *message, st tracking.MessageState, elapsed time.Duration, err error, seenBy []string) {
	var cond, text string
	if st == tracking.Error || st == tracking.Aborted {
		cond, text = condition(err)
	}
	if p.json {
		b, _ := json.Marshal(line{
			ID: id, To: m.to, State: st.String(),
			ElapsedMS: float64(elapsed.Microseconds()) / 1000,
			Condition: cond, Error: text, SeenBy: seenBy,
		})
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	out := fmt.Sprintf("%10s  %s  %s", fmtElapsed(elapsed), id, st)
	if cond != "" {
		out += "  " + cond
	}
	if text != "" {
		out += "  " + text
	}
	if st == tracking.InTransit {
		out += "  " + m.preview
	}
	if len(seenBy) > 0 {
		out += "  by " + strings.Join(seenBy, ", ")
	}
	fmt.Fprintln(p.w, out)
}

// condition returns the stanza error condition of err (for an error reply)
// and err's text.
func condition(err error) (cond, text string) {
	if err == nil {
		return "", ""
	}
	var de *stanza.DeliveryError
	if errors.As(err, &de) {
		cond = string(de.Stanza.Condition)
		if cond == "" {
			cond = "undefined-condition"
		}
	}
	return cond, err.Error()
}

func fmtElapsed(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.3fs", d.Seconds())
}
