package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// Config configures a Proxy. Only Target is required.
type Config struct {
	// Target is the host:port every accepted connection is forwarded to.
	Target string

	// Seed seeds the generator of byte budgets. Zero means a random seed;
	// Proxy.Seed reports the one in use.
	Seed uint64

	// MinBytes and MaxBytes bound the byte budget of each connection: it is
	// cut once it has forwarded a number of bytes drawn uniformly from
	// [MinBytes, MaxBytes], both directions together, at that exact byte
	// (but see Aligned). MaxBytes 0 means no budget (cuts only on command).
	// MinBytes below 1 counts as 1.
	MinBytes, MaxBytes int64

	// Aligned makes cuts respect what the client wrote, on the target's
	// side: the read (or with Units, the unit) in which a budget runs out
	// is forwarded whole, a cut waits for a write to the target in
	// progress, and the target's side is half-closed in an orderly way
	// (FIN once everything forwarded is delivered) and drained until the
	// target closes it, instead of being reset. The client's side is still
	// reset. A new connection reaches the target only once the target has
	// closed every connection cut before (at most drainTimeout each), so
	// the target has parsed all it got from the old connection before the
	// client resumes on the new one. For servers that cannot resume a
	// stream whose previous connection ended inside an element, or was
	// still being parsed (Prosody 0.12).
	Aligned bool

	// Units, with Aligned, splits what the client sends into units that
	// reach the target whole or not at all: the proxy forwards complete
	// units only, holds back the start of an incomplete one, and drops it
	// at a cut. It follows the bufio.SplitFunc contract; the tokens are
	// ignored. Nil means that each read is a unit, which matches the
	// client's writes only as long as the proxy keeps up. XMPPUnits splits
	// an XMPP client stream.
	Units bufio.SplitFunc

	// Tap, if set, is called for each connection once the target accepted
	// it, and returns writers that receive a copy of the bytes forwarded
	// client to target (up) and target to client (down); nil means none.
	// They are written in order, from the forwarding goroutines, after the
	// bytes were forwarded, and must not block for long. Writers that
	// implement io.Closer are closed once the connection has ended and
	// nothing more will be written.
	Tap func(conn int) (up, down io.Writer)

	// TapUpFirst makes the up writer receive each piece of the client's
	// bytes before it is forwarded instead of after, so that a tap that
	// freezes the connection when it sees a request lets the request
	// through but not the target's answer (after, the answer can pass
	// before the tap runs).
	TapUpFirst bool

	// DialTimeout bounds the connection to Target. Zero means 5 s.
	DialTimeout time.Duration

	// OnCut, if set, is called once for each connection the proxy cuts, on
	// the goroutine that cut it (Cut's or Close's caller, or a forwarding
	// goroutine), outside the proxy's locks. It must not block.
	OnCut func(Cut)

	// Logf receives one line when the proxy starts (with the seed), one per
	// cut and one per failed connection to Target. Nil means silent.
	Logf func(format string, args ...any)
}

// Cut describes one connection the proxy cut.
type Cut struct {
	// Conn is the connection's number, counting from 1 in accept order.
	Conn int
	// Up and Down are the bytes forwarded before the cut, client to target
	// and target to client. With Config.Aligned, a budget cut may come a
	// little after the budget: the read (or unit) in which it ran out is
	// forwarded whole.
	Up, Down int64
	// Budget reports a cut by the connection's byte budget; false means
	// Proxy.Cut or Proxy.Close.
	Budget bool
}

// Stats are a proxy's counters since Listen.
type Stats struct {
	// Accepted counts client connections accepted.
	Accepted int
	// DialFailures counts accepted connections closed because Target
	// refused them or did not answer.
	DialFailures int
	// Cuts counts connections cut, BudgetCuts those cut by their budget.
	Cuts, BudgetCuts int
	// Frozen counts connections frozen by Freeze.
	Frozen int
	// Live counts connections being forwarded now.
	Live int
	// Up and Down count bytes forwarded, client to target and back.
	Up, Down int64
}

// Proxy forwards loopback connections to a target and cuts them on demand.
// Its methods are safe for concurrent use.
type Proxy struct {
	cfg    Config
	ln     net.Listener
	seed   uint64
	ctx    context.Context // ends with Close; cancels dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	rng      *rand.Rand
	min, max int64
	links    map[int]*link
	stats    Stats
	closed   bool
	draining map[*link]bool // Aligned: cut connections the target has not closed yet
	drained  chan struct{}  // closed when draining empties; nil if none waits
}

// Listen starts a proxy on 127.0.0.1 on a free port, forwarding to
// cfg.Target. The caller must call Close.
func Listen(cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("faultproxy: no target")
	}
	if cfg.MaxBytes < 0 || cfg.MaxBytes > 0 && cfg.MinBytes > cfg.MaxBytes {
		return nil, fmt.Errorf("faultproxy: invalid budget range [%d, %d]", cfg.MinBytes, cfg.MaxBytes)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	seed := cfg.Seed
	for seed == 0 {
		seed = rand.Uint64()
	}
	p := &Proxy{
		cfg:      cfg,
		ln:       ln,
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		links:    make(map[int]*link),
		draining: make(map[*link]bool),
	}
	p.min, p.max = budgetRange(cfg.MinBytes, cfg.MaxBytes)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.logf("faultproxy: %s -> %s, seed %d, budget [%d, %d]", p.Addr(), cfg.Target, seed, p.min, p.max)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func budgetRange(lo, hi int64) (int64, int64) {
	if hi <= 0 {
		return 0, 0
	}
	return max(lo, 1), hi
}

// Addr returns the address clients connect to, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Seed returns the seed of the budget generator.
func (p *Proxy) Seed() uint64 { return p.seed }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Live = len(p.links)
	return s
}

// SetBudget changes the budget range. Every live connection gets a fresh
// budget counted from now (drawn in accept order), and every later
// connection one counted from its start. max 0 turns budget cuts off,
// including for live connections.
func (p *Proxy) SetBudget(min, max int64) error {
	if max < 0 || max > 0 && min > max {
		return fmt.Errorf("faultproxy: invalid budget range [%d, %d]", min, max)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.min, p.max = budgetRange(min, max)
	for _, n := range slices.Sorted(maps.Keys(p.links)) {
		p.links[n].budget = p.drawLocked()
	}
	return nil
}

// Cut cuts every live connection now and returns how many it cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	live := make([]*link, 0, len(p.links))
	for _, n := range slices.Sorted(maps.Keys(p.links)) {
		live = append(live, p.links[n])
	}
	p.mu.Unlock()
	cut := 0
	for _, l := range live {
		if l.cut(false) {
			cut++
		}
	}
	return cut
}

// Freeze freezes every live connection and returns how many it froze.
// From then on the proxy forwards nothing more in either direction and
// stops reading from both sides, without closing anything: no FIN, no
// RST. Each side's writes fill the socket buffers and then block, as when
// a NAT or firewall drops the connection's state or a middlebox stalls.
// Whatever the proxy had read but not forwarded is discarded. A frozen
// connection stays open, on both sides, until Cut or Close (or the budget:
// none is spent while frozen); the endpoints must notice by themselves.
func (p *Proxy) Freeze() int {
	p.mu.Lock()
	n := 0
	for _, l := range p.links {
		if !l.frozen {
			l.frozen = true
			n++
		}
	}
	p.stats.Frozen += n
	p.mu.Unlock()
	if n > 0 {
		p.logf("faultproxy: froze %d connections", n)
	}
	return n
}

// Close stops accepting, cuts every live connection (as Cut does) and waits
// until every goroutine of the proxy has returned. Closing again does
// nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.Cut()
	p.mu.Lock()
	for l := range p.draining {
		l.server.SetReadDeadline(time.Now()) // stop waiting for the target
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) logf(format string, args ...any) {
	if p.cfg.Logf != nil {
		p.cfg.Logf(format, args...)
	}
}

// drawLocked returns a budget for one connection, or -1 for none.
func (p *Proxy) drawLocked() int64 {
	if p.max <= 0 {
		return -1
	}
	return p.min + p.rng.Int64N(p.max-p.min+1)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if !closed {
				p.logf("faultproxy: accept: %v", err)
			}
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.stats.Accepted++
		n := p.stats.Accepted
		budget := p.drawLocked()
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(n, c.(*net.TCPConn), budget)
	}
}

// serve connects one client to the target and forwards until the link ends.
func (p *Proxy) serve(n int, client *net.TCPConn, budget int64) {
	defer p.wg.Done()
	if p.cfg.Aligned && !p.waitDrained() {
		abort(client)
		return
	}
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	sc, err := d.DialContext(p.ctx, "tcp", p.cfg.Target)
	if err != nil {
		p.mu.Lock()
		p.stats.DialFailures++
		p.mu.Unlock()
		p.logf("faultproxy: conn %d: %v", n, err)
		abort(client)
		return
	}
	l := &link{p: p, n: n, client: client, server: sc.(*net.TCPConn), budget: budget, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		abort(client)
		abort(l.server)
		return
	}
	p.links[n] = l
	p.mu.Unlock()
	if p.cfg.Tap != nil {
		l.upTap, l.downTap = p.cfg.Tap(n)
	}
	down := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(down)
		l.pipe(l.server, l.client, false)
	}()
	l.pipe(l.client, l.server, true)
	<-down
	l.client.Close()
	l.server.Close()
	p.mu.Lock()
	delete(p.draining, l)
	if len(p.draining) == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	p.mu.Unlock()
	for _, w := range []io.Writer{l.upTap, l.downTap} {
		if c, ok := w.(io.Closer); ok {
			c.Close()
		}
	}
}

// drainTimeout bounds how long an aligned cut waits for the target to close
// its side.
const drainTimeout = 30 * time.Second

// waitDrained waits until the target has closed every cut connection. It
// reports false if the proxy was closed meanwhile.
func (p *Proxy) waitDrained() bool {
	for {
		p.mu.Lock()
		if len(p.draining) == 0 {
			p.mu.Unlock()
			return true
		}
		if p.drained == nil {
			p.drained = make(chan struct{})
		}
		ch := p.drained
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.ctx.Done():
			return false
		}
	}
}

// abort closes c with a reset.
func abort(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// link is one proxied connection. Fields below wmu are guarded by p.mu.
type link struct {
	p              *Proxy
	n              int
	client, server *net.TCPConn
	upTap, downTap io.Writer
	wmu            sync.Mutex // held while writing to the target (Aligned)

	pending []byte // start of an incomplete unit (up pipe only)

	budget   int64 // bytes left before the cut; negative: none
	up, down int64
	halfDone int           // directions that ended with an orderly EOF
	ended    bool          // cut or closed: nothing more is forwarded
	frozen   bool          // Freeze: nothing more is read or forwarded
	done     chan struct{} // closed when ended is set
}

// isFrozen reports whether the link was frozen.
func (l *link) isFrozen() bool {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	return l.frozen
}

// markEndedLocked sets ended and wakes the pipes of a frozen link.
func (l *link) markEndedLocked() {
	l.ended = true
	close(l.done)
}

// pipe forwards src to dst until src ends, the budget runs out or the link
// is cut.
func (l *link) pipe(src, dst *net.TCPConn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		if l.isFrozen() {
			<-l.done
			return
		}
		n, err := src.Read(buf)
		if l.isFrozen() { // what the read returned is lost in the freeze
			<-l.done
			return
		}
		if n > 0 && !l.forwardUnits(dst, buf[:n], up) {
			if !up && l.p.cfg.Aligned {
				// An aligned cut half-closed the target's side: read
				// what it still sends until it closes, so that closing
				// ours does not reset the connection (a close with unread
				// data resets it, and a reset discards what the target
				// has not read yet).
				io.Copy(io.Discard, src)
			}
			return
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			// An orderly end in one direction: pass it on, with what is
			// left of an incomplete unit, and keep the other direction.
			if up && len(l.pending) > 0 && !l.forward(dst, l.pending, up) {
				return
			}
			dst.CloseWrite()
			if l.eof() {
				l.close()
			}
			return
		default:
			l.close()
			return
		}
	}
}

// forwardUnits forwards b, or with Config.Units the units it completes,
// and reports whether to go on.
func (l *link) forwardUnits(dst *net.TCPConn, b []byte, up bool) bool {
	split := l.p.cfg.Units
	if !up || !l.p.cfg.Aligned || split == nil {
		return l.forward(dst, b, up)
	}
	l.pending = append(l.pending, b...)
	n := 0
	for n < len(l.pending) {
		adv, _, err := split(l.pending[n:], false)
		if err != nil {
			n = len(l.pending) // cannot split: forward as it is
			break
		}
		if adv <= 0 {
			break
		}
		n += adv
	}
	if n == 0 {
		return true
	}
	ok := l.forward(dst, l.pending[:n], up)
	l.pending = append(l.pending[:0], l.pending[n:]...)
	return ok
}

// forward writes b, or the part of it the budget allows, to dst, and
// reports whether to go on.
func (l *link) forward(dst *net.TCPConn, b []byte, up bool) bool {
	aligned := l.p.cfg.Aligned
	if aligned && up {
		l.wmu.Lock()
	}
	allowed, exhausted := l.take(len(b), up)
	var werr error
	if allowed > 0 {
		tap := l.downTap
		if up {
			tap = l.upTap
		}
		first := up && l.p.cfg.TapUpFirst
		if tap != nil && first {
			tap.Write(b[:allowed])
		}
		var n int
		n, werr = dst.Write(b[:allowed])
		if tap != nil && !first && n > 0 {
			tap.Write(b[:n])
		}
	}
	if aligned && up {
		l.wmu.Unlock()
	}
	switch {
	case werr != nil:
		l.close()
		return false
	case exhausted:
		l.cut(true)
		return false
	}
	return allowed == len(b) // less: the link ended meanwhile
}

// take reserves up to n bytes of the budget for forwarding (all n with
// Aligned). exhausted reports that the link must be cut after writing them.
func (l *link) take(n int, up bool) (allowed int, exhausted bool) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.ended {
		return 0, false
	}
	allowed = n
	if l.budget >= 0 {
		if !p.cfg.Aligned {
			allowed = int(min(int64(n), l.budget))
		}
		l.budget = max(l.budget-int64(allowed), 0)
		exhausted = l.budget == 0
	}
	if up {
		l.up += int64(allowed)
		p.stats.Up += int64(allowed)
	} else {
		l.down += int64(allowed)
		p.stats.Down += int64(allowed)
	}
	return allowed, exhausted
}

// eof records an orderly end of one direction and reports whether both
// have ended.
func (l *link) eof() bool {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.halfDone++
	return l.halfDone == 2
}

// end marks the link ended and reports whether it was live.
func (l *link) end() bool {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.ended {
		return false
	}
	l.markEndedLocked()
	delete(p.links, l.n)
	return true
}

// close ends the link in an orderly way (not a cut).
func (l *link) close() {
	if l.end() {
		l.client.Close()
		l.server.Close()
	}
}

// cut ends the link abruptly and reports whether it was live.
func (l *link) cut(budget bool) bool {
	p := l.p
	p.mu.Lock()
	if l.ended {
		p.mu.Unlock()
		return false
	}
	l.markEndedLocked()
	delete(p.links, l.n)
	p.stats.Cuts++
	if budget {
		p.stats.BudgetCuts++
	}
	if p.cfg.Aligned {
		p.draining[l] = true
	}
	c := Cut{Conn: l.n, Up: l.up, Down: l.down, Budget: budget}
	p.mu.Unlock()
	abort(l.client)
	if p.cfg.Aligned {
		// A write to the target in progress completes first; then the
		// target gets everything forwarded and an orderly end. The
		// target-to-client goroutine drains the target until it closes
		// (bounded by drainTimeout); serve then closes the connection.
		l.wmu.Lock()
		l.server.CloseWrite()
		l.server.SetReadDeadline(time.Now().Add(drainTimeout))
		l.wmu.Unlock()
	} else {
		abort(l.server)
	}
	how := "on command"
	if budget {
		how = "by budget"
	}
	p.logf("faultproxy: conn %d cut %s after %d bytes up, %d down", c.Conn, how, c.Up, c.Down)
	if p.cfg.OnCut != nil {
		p.cfg.OnCut(c)
	}
	return true
}
