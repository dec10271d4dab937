package sm

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

const limitHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='x'>`

// scanLimited feeds chunks to an inbound scanner with lim and returns the
// number of bytes accepted before the first error, and the error.
func scanLimited(lim limits, chunks ...string) (int, *recSink, error) {
	var sink recSink
	s := newScanner(&sink, false)
	s.lim = lim
	n := 0
	for _, c := range chunks {
		k, err := s.Write([]byte(c))
		n += k
		if err != nil {
			return n, &sink, err
		}
	}
	return n, &sink, nil
}

func TestScannerLimits(t *testing.T) {
	lim := limits{stanza: 200, ws: 10, streamErr: 100}
	msg := func(body int) string {
		return `<message><body>` + strings.Repeat("x", body) + `</body></message>`
	}
	frame := len(msg(0)) // 32
	tests := []struct {
		name   string
		chunks []string
		what   string // "" = no breach
	}{
		{"stanza at the limit", []string{limitHeader, msg(200 - frame), " ", msg(200 - frame)}, ""},
		{"stanza over the limit", []string{limitHeader, msg(201 - frame)}, "stanza"},
		{"stanza over the limit in pieces", []string{limitHeader, `<message><body>`, strings.Repeat("x", 100), strings.Repeat("x", 100)}, "stanza"},
		{"whitespace at the limit, twice", []string{limitHeader, strings.Repeat(" ", 10), `<r xmlns='urn:xmpp:sm:3'/>`, strings.Repeat(" ", 5), strings.Repeat(" ", 5)}, ""},
		{"whitespace over the limit", []string{limitHeader, strings.Repeat(" ", 6), strings.Repeat(" ", 5)}, "whitespace"},
		{"whitespace inside a stanza counts for the stanza", []string{limitHeader, `<message>` + strings.Repeat(" ", 150) + `</message>`}, ""},
		{"comment at stream level", []string{limitHeader, `<!--` + strings.Repeat("-", 300)}, "stanza"},
		{"stream error", []string{limitHeader, `<stream:error><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>` + strings.Repeat("y", 60)}, "stream error"},
		{"features during negotiation", []string{limitHeader, `<stream:features>` + strings.Repeat(" ", 300)}, "stanza"},
		{"stream header over the limit", []string{`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='` + strings.Repeat("i", 200) + `'>`}, "stanza"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, sink, err := scanLimited(lim, tc.chunks...)
			if tc.what == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.What != tc.what || sink.lim != le || !errors.Is(err, ErrInputLimit) {
				t.Fatalf("error %v (sink %v), want a %s limit", err, sink.lim, tc.what)
			}
			var se stream.Error
			if !errors.As(err, &se) || se.Err != stream.PolicyViolation.Err {
				t.Errorf("stream error %v, want policy-violation", se)
			}
		})
	}
}

// TestScannerLimitSticky: once over a limit, every write fails and
// consumes nothing, and the element is not reported.
func TestScannerLimitSticky(t *testing.T) {
	var sink recSink
	s := newScanner(&sink, false)
	s.lim = limits{stanza: 50}
	s.Write([]byte(limitHeader))
	n, err := s.Write([]byte(`<message>` + strings.Repeat("x", 60) + `</message>`))
	if err == nil || n != 0 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := s.Write([]byte(`<message/>`)); err == nil || n != 0 {
		t.Fatalf("later Write = %d, %v", n, err)
	}
	for _, r := range sink.got {
		if r.kind == kindMessage {
			t.Fatalf("reported %v", r)
		}
	}
}

// floodServer accepts one client stream on conn, answers with a stream
// header and then writes prefix followed by filler until the client stops
// reading; it returns how many bytes of filler it managed to write.
func floodServer(conn net.Conn, prefix, filler string) <-chan int64 {
	done := make(chan int64, 1)
	go io.Copy(io.Discard, conn)
	go func() {
		var n int64
		if _, err := io.WriteString(conn, limitHeader+prefix); err == nil {
			chunk := []byte(strings.Repeat(filler, 64<<10/len(filler)))
			for n < 400<<20 {
				k, err := conn.Write(chunk)
				n += int64(k)
				if err != nil {
					break
				}
			}
		}
		done <- n
	}()
	return done
}

// TestInputLimitsNegotiation: during negotiation, a server that sends a
// stream feature list of 400 MB of whitespace (or a 50 MB element) is cut
// off at the limit: NewSession fails with a *LimitError after the client
// read little more than the limit, and the heap does not grow with what
// the server sends.
func TestInputLimitsNegotiation(t *testing.T) {
	tests := []struct {
		name           string
		prefix, filler string
		what           string
	}{
		{"whitespace", "", " ", "whitespace"},
		{"features", "<stream:features>", " ", "stanza"},
		{"text", "<stream:features><x>", "x", "stanza"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			cc, sc := net.Pipe()
			written := floodServer(sc, tc.prefix, tc.filler)
			st := New(Config{})
			in, out := st.Tees()
			_, err := xmpp.NewSession(context.Background(), jid.MustParse(testDomain), jid.MustParse(testUser), cc, xmpp.Secure,
				xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
					return xmpp.StreamConfig{Features: []xmpp.StreamFeature{testAuth()}, TeeIn: in, TeeOut: out}
				}))
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			cc.Close()
			sc.Close()
			n := <-written
			// mellium reports the input cut short (the read failed with the
			// *LimitError after a partial token); the State knows why.
			var le *LimitError
			if err == nil || !errors.As(connErr(st), &le) || le.What != tc.what {
				t.Fatalf("NewSession: %v (%v), want a %s *LimitError", err, connErr(st), tc.what)
			}
			// The client stops reading at the limit: what the server got
			// through is the limit plus a read buffer or two.
			if n > 2<<20 {
				t.Errorf("the server wrote %d bytes before the client stopped reading", n)
			}
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
				t.Errorf("heap grew by %d bytes", grew)
			}
		})
	}
}

// TestInputLimitsServe: on an established stream, 400 MB of whitespace
// keepalives or a message with a 50 MB body end the connection at the
// limit: Serve returns the *LimitError and the client stops reading.
func TestInputLimitsServe(t *testing.T) {
	tests := []struct {
		name           string
		prefix, filler string
		what           string
	}{
		{"whitespace", "", "\n", "whitespace"},
		{"body", "<message from='peer@example.org/x' id='big'><body>", "x", "stanza"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t)
			st := New(Config{})
			c := mustDial(t, srv, st, nil)
			if err := st.WaitEnabled(t.Context()); err != nil {
				t.Fatal(err)
			}
			written := make(chan int64, 1)
			go func() {
				var n int64
				// Straight to the pipe: bufConn would buffer it all.
				c.sc.conn.Conn.Write([]byte(tc.prefix))
				chunk := []byte(strings.Repeat(tc.filler, 64<<10))
				for n < 400<<20 {
					select {
					case <-c.served:
						written <- n
						return
					default:
					}
					k, err := c.sc.conn.Conn.Write(chunk)
					n += int64(k)
					if err != nil {
						break
					}
				}
				written <- n
			}()
			err := c.waitServed()
			n := <-written
			var le *LimitError
			if !errors.As(err, &le) || le.What != tc.what {
				t.Fatalf("Serve: %v, want a %s *LimitError", err, tc.what)
			}
			if n > 2<<20 {
				t.Errorf("the server wrote %d bytes before the client stopped reading", n)
			}
		})
	}
}

// connErr returns why the current connection ended, as the State recorded
// it.
func connErr(st *State) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.conn.fatal
}
