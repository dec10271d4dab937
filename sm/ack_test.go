package sm

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// holdAcks makes the server ignore <r/> so that tests control acks.
func holdAcks(srv *fakeServer) {
	srv.mu.Lock()
	srv.holdR = true
	srv.mu.Unlock()
}

func TestAckReleasesInOrderAndIgnoresStaleH(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		for i := range 5 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		steps := []struct {
			h    string
			want []string
		}{
			{"2", []string{"acked:m0", "acked:m1"}},
			{"2", nil}, // repeated
			{"1", nil}, // backwards
			{"0", nil},
			{"5", []string{"acked:m2", "acked:m3", "acked:m4"}},
			{"5", nil}, // unsolicited, nothing new
		}
		for _, s := range steps {
			c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='` + s.h + `'/>`)
			synctest.Wait()
			var evs []string
			for len(rec.ch) > 0 {
				evs = append(evs, <-rec.ch)
			}
			if !slices.Equal(evs, s.want) {
				t.Fatalf("h=%s: got %v, want %v", s.h, evs, s.want)
			}
		}
		select {
		case <-c.served:
			t.Fatalf("stream closed: %v", c.serveEr)
		default:
		}
		if info := st.Info(); info.Acked != 5 || info.Unacked != 0 {
			t.Fatalf("info %+v", info)
		}
		// Stanza fields reach the callback.
		s := rec.acked[0]
		if s.Seq != 1 || s.Name != "message" || s.To != "peer@example.org" || !bytes.HasPrefix(s.Raw, []byte("<message")) || s.Sent.IsZero() {
			t.Errorf("stanza %+v", s)
		}
		c.close()
	})
}

func TestHandledCountTooHigh(t *testing.T) {
	tests := []struct {
		name  string
		base  uint32
		h     uint32 // acknowledged
		count uint32 // send-count expected
	}{
		{"one too many", 0, 4, 3},
		{"across the wrap", math.MaxUint32 - 1, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				srv.base = tc.base
				holdAcks(srv)
				rec := newRecorder()
				st := New(rec.config(Config{}))
				st.base = tc.base
				c := mustDial(t, srv, st, nil)
				for i := range 3 {
					sendMsg(t, st, c.sess, fmt.Sprint("m", i))
				}
				synctest.Wait()
				c.sc.raw(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, tc.h))
				<-c.served
				<-c.sc.done
				var herr *HandledCountTooHighError
				if !errors.Is(c.serveEr, ErrHandledCountTooHigh) || !errors.As(c.serveEr, &herr) ||
					herr.H != tc.h || herr.SendCount != tc.count {
					t.Fatalf("Serve: %v", c.serveEr)
				}
				wire := c.sc.conn.received()
				want := fmt.Sprintf(`<handled-count-too-high xmlns="urn:xmpp:sm:3" h="%d" send-count="%d">`, tc.h, tc.count)
				if !strings.Contains(wire, want) || !strings.Contains(wire, "undefined-condition") {
					t.Fatalf("stream error not sent; server read:\n%s", wire)
				}
				if info := st.Info(); info.Resumable || info.Unacked != 3 || len(rec.ch) != 0 {
					t.Fatalf("after error: %+v, %d callbacks", info, len(rec.ch))
				}
				c.conn.Close()

				// The next connection does not resume; the policy re-sends.
				srv.mu.Lock()
				srv.holdR = false
				srv.mu.Unlock()
				c = mustDial(t, srv, st, nil)
				want3 := []string{"resent:m0", "resent:m1", "resent:m2", "acked:m0", "acked:m1", "acked:m2"}
				if evs := waitEvents(t, rec, 6); !sameOrderPerKind(evs, want3) {
					t.Fatalf("after reconnect: %v", evs)
				}
				srv.mu.Lock()
				resumes := srv.resumes
				srv.mu.Unlock()
				if resumes != 0 || st.Resumed() {
					t.Fatalf("resumed after handled-count-too-high")
				}
				c.close()
			})
		})
	}
}

func TestInvalidAck(t *testing.T) {
	tests := []struct {
		ack  string
		want error
	}{
		{`<a xmlns='urn:xmpp:sm:3'/>`, stanza.ErrMissingAttr},
		{`<a xmlns='urn:xmpp:sm:3' h=''/>`, stanza.ErrMissingAttr},
		{`<a xmlns='urn:xmpp:sm:3' h='-1'/>`, stanza.ErrInvalidH},
		{`<a xmlns='urn:xmpp:sm:3' h='+-1'/>`, stanza.ErrInvalidH},
		{`<a xmlns='urn:xmpp:sm:3' h='abc'/>`, stanza.ErrInvalidH},
		{`<a xmlns='urn:xmpp:sm:3' h='1 1'/>`, stanza.ErrInvalidH},
		{`<a xmlns='urn:xmpp:sm:3' h='4294967296'/>`, stanza.ErrInvalidH},
	}
	for _, tc := range tests {
		t.Run(tc.ack, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				holdAcks(srv)
				st := New(Config{})
				c := mustDial(t, srv, st, nil)
				sendMsg(t, st, c.sess, "m0")
				synctest.Wait()
				c.sc.raw(tc.ack)
				<-c.served
				<-c.sc.done
				if !errors.Is(c.serveEr, ErrProtocol) {
					t.Fatalf("Serve: %v", c.serveEr)
				}
				if !errors.Is(c.serveEr, tc.want) && !(tc.want == stanza.ErrMissingAttr && errors.Is(c.serveEr, stanza.ErrInvalidH)) {
					t.Errorf("cause: %v, want %v", c.serveEr, tc.want)
				}
				if !strings.Contains(c.sc.conn.received(), "bad-format") {
					t.Errorf("no bad-format stream error")
				}
				if info := st.Info(); info.Resumable || info.Unacked != 1 {
					t.Errorf("info %+v", info)
				}
				c.conn.Close()
			})
		})
	}
}

func TestEnabledWithoutResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.enabledAttrs = `id='not-resumable'`
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatal(ev)
		}
		if info := st.Info(); !info.Enabled || info.Resumable {
			t.Fatalf("info %+v", info)
		}
		holdAcks(srv)
		sendMsg(t, st, c.sess, "m1")
		synctest.Wait()
		c.drop()
		srv.mu.Lock()
		srv.holdR = false
		srv.mu.Unlock()
		c = mustDial(t, srv, st, nil)
		if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"resent:m1", "acked:m1"}) {
			t.Fatal(evs)
		}
		srv.mu.Lock()
		resumes := srv.resumes
		srv.mu.Unlock()
		if resumes != 0 {
			t.Fatal("tried to resume a non-resumable stream")
		}
		c.close()
	})
}

func TestEnableFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.enableFails = true
		rec := newRecorder()
		st := New(rec.config(Config{MaxUnacked: 1}))
		c := mustDial(t, srv, st, nil)
		for i := range 5 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i)) // Reserve must not block
		}
		time.Sleep(time.Second) // fake time: the requester would have fired
		synctest.Wait()
		gotten, rs, _, _ := srv.snapshot()
		if info := st.Info(); info.Enabled || info.Resumable || info.Unacked != 0 || rs != 0 || len(gotten) != 5 {
			t.Fatalf("info %+v, %d <r/>, server got %d", info, rs, len(gotten))
		}
		if len(rec.ch) != 0 {
			t.Fatalf("callbacks without stream management")
		}
		c.close()
	})
}

func TestServerWithoutSM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.offerSM = false
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait()
		srv.mu.Lock()
		enables := srv.enables
		srv.mu.Unlock()
		if enables != 0 || st.Enabled() {
			t.Fatal("enabled without <sm/>")
		}
		c.close()
	})
}

func TestReserveBlocksWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{MaxUnacked: 3})
		c := mustDial(t, srv, st, nil)
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := st.Reserve(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Reserve on a full queue: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			slot, err := st.Reserve(context.Background())
			slot.Release()
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Reserve returned early: %v", err)
		default:
		}
		srv.releaseR()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if info := st.Info(); info.Unacked != 0 {
			t.Fatalf("info %+v", info)
		}
		c.close()
	})
}

func TestSMIDOnlyLoggedAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var buf bytes.Buffer
				srv := newFakeServer(t)
				st := New(Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))})
				c := mustDial(t, srv, st, nil)
				sendMsg(t, st, c.sess, "m0")
				synctest.Wait()
				srv.mu.Lock()
				id := srv.smID
				srv.mu.Unlock()
				c.drop()
				c = mustDial(t, srv, st, nil)
				synctest.Wait()
				c.close()
				logged := strings.Contains(buf.String(), id)
				if logged != (level == slog.LevelDebug) || !strings.Contains(buf.String(), "resumed") {
					t.Fatalf("level %v, SM-ID logged: %v\n%s", level, logged, buf.String())
				}
			})
		})
	}
}

func TestSMIDTooLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.enabledAttrs = `id='` + strings.Repeat("x", stanza.MaxIDLen+1) + `' resume='true'`
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatal(ev)
		}
		if info := st.Info(); !info.Enabled || info.Resumable {
			t.Fatalf("info %+v", info)
		}
		c.close()
	})
}

func TestHandlerPassesStanzasOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{})
		var seen []string
		inner := xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			seen = append(seen, start.Name.Local)
			return nil
		})
		c := mustDial(t, srv, st, inner)
		c.sc.send(`<message from='peer@example.org/x' id='x'/>`)
		c.sc.requestAck()
		c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='0'/><foo xmlns='urn:example'/>`)
		synctest.Wait()
		c.close()
		if !slices.Equal(seen, []string{"message", "foo"}) {
			t.Fatalf("inner handler saw %v", seen)
		}
	})
}

func TestStartErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{})
		if err := st.Start(context.Background(), nil); !errors.Is(err, ErrNoTees) {
			t.Fatalf("Start without Tees: %v", err)
		}
		srv := newFakeServer(t)
		c := mustDial(t, srv, st, nil)
		if err := st.Start(context.Background(), c.sess); !errors.Is(err, ErrStarted) {
			t.Fatalf("second Start: %v", err)
		}
		c.close()
	})
}

func TestSendAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		synctest.Wait() // <enabled/> arrived
		c.sc.send(`<message from='peer@example.org/x' id='a'/>`)
		c.sc.send(`<message from='peer@example.org/x' id='b'/>`)
		synctest.Wait()
		if err := st.SendAck(context.Background(), c.sess); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if _, _, acks, _ := srv.snapshot(); !slices.Equal(acks, []uint32{2}) {
			t.Fatalf("server got %v", acks)
		}
		c.close()
	})
}

func TestErrors(t *testing.T) {
	herr := error(&HandledCountTooHighError{H: 5, SendCount: 3})
	perr := error(&ProtocolError{Element: "a", Err: stanza.ErrInvalidH})
	var se stream.Error
	switch {
	case herr.Error() != "sm: server acknowledged h=5 but only 3 stanzas were sent":
		t.Error(herr)
	case !strings.Contains(perr.Error(), "<a/>") || !errors.Is(perr, stanza.ErrInvalidH) || errors.Is(perr, ErrHandledCountTooHigh):
		t.Error(perr)
	case !errors.As(perr, &se) || se.Err != "bad-format":
		t.Error(se)
	case !errors.As(herr, &se) || se.Err != "undefined-condition":
		t.Error(se)
	}
	if ReportLost.String() != "report-lost" || Resend.String() != "resend" || Policy(9).String() != "unknown" {
		t.Error("Policy.String")
	}
}

// TestAckHLexicalForms: XEP-0198's schema types h as xs:unsignedInt, whose
// lexical space allows a '+' sign (a '-' one on 0) and surrounding white
// space: an ack in such a form acknowledges as usual, and does not end the
// stream with bad-format.
func TestAckHLexicalForms(t *testing.T) {
	for _, form := range []string{"+%d", " %d ", "%d\n", "\t+000%d"} {
		t.Run(fmt.Sprintf("%q", form), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				srv.rReply = func(h uint32) string {
					return fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='`+form+`'/>`, h)
				}
				rec := newRecorder()
				st := New(rec.config(Config{}))
				c := mustDial(t, srv, st, nil)
				synctest.Wait()
				sendMsg(t, st, c.sess, "m0")
				if ev := rec.next(t); ev != "acked:m0" {
					t.Fatalf("event %s", ev)
				}
				select {
				case <-c.served:
					t.Fatalf("the stream ended: %v", c.serveEr)
				default:
				}
				c.close()
			})
		})
	}
}

// teeLagConn is the client's end of a link whose Write, for a write that
// holds marker, returns only once release is closed, after the bytes
// reached the server: mellium copies what it wrote to TeeOut only once the
// connection's Write returned, so this stands for the writer being
// preempted between the two (a GC pause, loaded cores).
type teeLagConn struct {
	net.Conn
	marker  string
	release chan struct{}
}

func (c teeLagConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if strings.Contains(string(p), c.marker) {
		<-c.release
	}
	return n, err
}

// TestUnsolicitedAckBeforeTeeCounted: an unsolicited <a/> (XEP-0198 allows
// one at any time) that counts a stanza the server read before the
// outbound tee counted it is a correct ack, not handled-count-too-high:
// its h is judged again once the write under way is counted. (The stream
// was ended with handled-count-too-high h=1, send-count 0.)
func TestUnsolicitedAckBeforeTeeCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		release := make(chan struct{})
		var once sync.Once
		free := func() { once.Do(func() { close(release) }) }
		srv.clientWrap = func(c net.Conn) net.Conn {
			return teeLagConn{Conn: c, marker: "</message>", release: release}
		}
		srv.cutAfter = func(g got) bool { // srv.mu is held
			if g.id == "m1" {
				go srv.cur.raw(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, srv.inH))
			}
			return false
		}
		rec := newRecorder()
		st := New(rec.config(Config{}))
		st.settleHook = free // the <a/> waits for the write: let it end
		c := mustDial(t, srv, st, nil)
		if err := st.WaitEnabled(t.Context()); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		cn := st.conn
		st.mu.Unlock()
		go func() {
			<-cn.done // without the wait, the stream ends with the write held
			free()
		}()
		sendMsg(t, st, c.sess, "m1")
		if ev := rec.next(t); ev != "acked:m1" {
			t.Fatalf("event %s", ev)
		}
		synctest.Wait()
		select {
		case <-c.served:
			t.Fatalf("the stream ended: %v", c.serveEr)
		default:
		}
		c.close()
	})
}
