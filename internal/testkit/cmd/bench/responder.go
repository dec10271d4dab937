package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
)

// dropCounter is a slog.Handler that counts the answers the client's
// recipient side dropped because its outbox was full (a debug record).
type dropCounter struct{ n *atomic.Int64 }

func (d dropCounter) Enabled(context.Context, slog.Level) bool { return true }
func (d dropCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "outbox full") {
		d.n.Add(1)
	}
	return nil
}
func (d dropCounter) WithAttrs([]slog.Attr) slog.Handler { return d }
func (d dropCounter) WithGroup(string) slog.Handler      { return d }

// Marker policies of the responder (the -markers flag).
const (
	markEach   = "each"   // every message, from the handler
	markLatest = "latest" // the newest message of each peer, every markEvery
)

// markEvery is how often the "latest" policy marks the newest messages.
const markEvery = 2 * time.Millisecond

// runResponder logs in an xmpptrack client that answers every receipt
// request (the library does) and marks incoming messages displayed with
// Client.MarkDisplayed: each one from the handler, or under the "latest"
// policy the newest one of each peer every 2 ms (a displayed marker covers
// every earlier message), until its standard input ends.
func runResponder(ctx context.Context, a *childArgs) result {
	var res result
	var dropped, marked atomic.Int64
	var c *xmpptrack.Client
	ready := make(chan struct{})
	var mu sync.Mutex
	peers := map[string]jid.JID{} // latest: peers with messages to mark
	handler := xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		<-ready
		from, err := jid.Parse(attrValue(start.Attr, "from"))
		if err != nil {
			return nil
		}
		if a.markers == markLatest {
			mu.Lock()
			peers[from.Bare().String()] = from
			mu.Unlock()
		} else if c.MarkDisplayed(from) {
			marked.Add(1)
		}
		return nil
	})
	if a.markers == markLatest {
		go func() {
			tick := time.NewTicker(markEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				mu.Lock()
				batch := peers
				peers = map[string]jid.JID{}
				mu.Unlock()
				for _, p := range batch {
					if c.MarkDisplayed(p) {
						marked.Add(1)
					}
				}
			}
		}()
	}
	dctx, cancel := context.WithTimeout(ctx, a.timeout)
	c, err := dialTracked(dctx, a, xmpptrack.Config{
		Handler: handler,
		Logger:  slog.New(dropCounter{&dropped}),
	})
	cancel()
	close(ready)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	s, err := c.Session(ctx)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer profile(a.cpuprofile)()
	emit(result{Event: "ready", Role: roleResponder, JID: s.LocalAddr().String()})
	// Every line on standard input asks for the counts so far; its end
	// stops the responder.
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		emit(result{Event: "stats", Role: roleResponder, Received: int(marked.Load()), Dropped: int(dropped.Load()), CPU: seconds(cpuNow())})
	}
	c.Close()
	res.Received, res.Dropped = int(marked.Load()), int(dropped.Load())
	return res
}
