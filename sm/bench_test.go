package sm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// benchMessage is a typical chat message as mellium writes it (245 bytes).
var benchMessage = []byte(`<message xmlns="jabber:client" to="juliet@capulet.example/balcony" id="b4b2e6c1-5a7e-4bde-9d7c" type="chat">` +
	`<body xmlns="jabber:client">Art thou not Romeo, and a Montague?</body><request xmlns="urn:xmpp:receipts"></request>` +
	`<origin-id xmlns="urn:xmpp:sid:0" id="b4b2"></origin-id></message>`)

type nopSink struct{ n int }

func (s *nopSink) element(*element)  { s.n++ }
func (s *nopSink) limit(*LimitError) {}

// BenchmarkScanner reports the cost of the scanner per stanza (ns/op is
// per stanza): alone (in: counting, out: also capturing the bytes), in
// small chunks, and through the full tees (counting under the lock; out
// also copies the stanza and its id and to into the queue).
func BenchmarkScanner(b *testing.B) {
	header := []byte(testHeader)
	for _, bc := range []struct {
		name    string
		capture bool
		chunk   int
	}{
		{"in", false, 0},
		{"out", true, 0},
		{"in/16B-chunks", false, 16},
		{"out/16B-chunks", true, 16},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var sink nopSink
			sc := newScanner(&sink, bc.capture)
			sc.Write(header)
			b.SetBytes(int64(len(benchMessage)))
			b.ReportAllocs()
			for b.Loop() {
				if bc.chunk == 0 {
					sc.Write(benchMessage)
					continue
				}
				for p := benchMessage; len(p) > 0; {
					n := min(bc.chunk, len(p))
					sc.Write(p[:n])
					p = p[n:]
				}
			}
			if sink.n-1 != b.N { // the stream header is an element too
				b.Fatalf("%d elements for %d stanzas", sink.n, b.N)
			}
		})
	}
	b.Run("tee-in", func(b *testing.B) {
		st := New(Config{})
		in, _ := st.Tees()
		st.conn.inActive = true
		in.Write(header)
		b.SetBytes(int64(len(benchMessage)))
		b.ReportAllocs()
		for b.Loop() {
			in.Write(benchMessage)
		}
		if int(st.inH) != b.N {
			b.Fatalf("counted %d of %d", st.inH, b.N)
		}
	})
	b.Run("tee-out", func(b *testing.B) {
		st := New(Config{})
		_, out := st.Tees()
		out.Write(header)
		out.Write([]byte(`<enable xmlns="urn:xmpp:sm:3" resume="true"></enable>`))
		b.SetBytes(int64(len(benchMessage)))
		b.ReportAllocs()
		for b.Loop() {
			out.Write(benchMessage)
			if st.queue.len() == 256 {
				st.mu.Lock()
				st.ackLocked(st.outH)
				st.mu.Unlock()
			}
		}
	})
}

// BenchmarkBurst sends bursts of 5,000 messages through the scripted
// server in real time and reports <r/> per stanza.
func BenchmarkBurst(b *testing.B) {
	const n = 5000
	rs := 0
	for b.Loop() {
		rs += burst(b, n, 0, 0)
	}
	b.ReportMetric(float64(rs)/float64(n*b.N), "r/stanza")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/stanza")
}

func TestBenchMessageIsTypical(t *testing.T) {
	if len(benchMessage) < 200 || len(benchMessage) > 300 {
		t.Fatalf("benchMessage is %d bytes", len(benchMessage))
	}
	var s recSink
	sc := newScanner(&s, true)
	sc.Write([]byte(testHeader))
	sc.Write(bytes.Repeat(benchMessage, 3))
	if len(s.got) != 4 || s.got[1].raw != string(benchMessage) || s.got[3].id != "b4b2e6c1-5a7e-4bde-9d7c" {
		t.Fatalf("got %v", s.got)
	}
}

// TestOutboundAddresses checks the To that OnWritten reports for a run of
// stanzas whose to attributes repeat, change, carry entities (one whose
// raw bytes equal the previous stanza's decoded address included) or are
// absent: the outbound tee reuses the previous address only for the same
// raw bytes.
func TestOutboundAddresses(t *testing.T) {
	var got []string
	st := New(Config{OnWritten: func(s Stanza) { got = append(got, s.To) }})
	_, out := st.Tees()
	out.Write([]byte(testHeader))
	out.Write([]byte(`<enable xmlns="urn:xmpp:sm:3"></enable>`))
	tos := []string{`to="bob@x"`, `to="bob@x"`, `to="a&amp;amp;b@x"`, `to="a&amp;b@x"`, `to="a&amp;b@x"`, ``, `to="bob@x"`, `to=''`, `to="bob@x"`}
	want := []string{"bob@x", "bob@x", "a&amp;b@x", "a&b@x", "a&b@x", "", "bob@x", "", "bob@x"}
	for i, to := range tos {
		fmt.Fprintf(out, `<message %s id="m%d"><body>hi</body></message>`, to, i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("To of the written stanzas:\n got %q\nwant %q", got, want)
	}
}

// BenchmarkOutboundStanza measures the outbound tee per stanza, with the
// stanzas acknowledged in batches of 256 as under the default window: the
// scan, the copy kept for re-sending and the OnWritten report.
func BenchmarkOutboundStanza(b *testing.B) {
	st := New(Config{OnWritten: func(Stanza) {}})
	_, out := st.Tees()
	out.Write([]byte(testHeader))
	out.Write([]byte(`<enable xmlns="urn:xmpp:sm:3" resume="true"></enable>`))
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		out.Write(benchMessage)
		if st.queue.len() == 256 {
			st.mu.Lock()
			st.ackLocked(st.outH)
			st.mu.Unlock()
		}
	}
}

// BenchmarkPace measures Pace and Slot.Release for a sender that finds
// room in the window, as a sequential sender mostly does.
func BenchmarkPace(b *testing.B) {
	st := New(Config{})
	st.Tees()
	st.mu.Lock()
	st.conn.smOn = true
	st.mu.Unlock()
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		s, err := st.Pace(ctx)
		if err != nil || !s.Held() {
			b.Fatal(s.Held(), err)
		}
		s.Release()
	}
}

// BenchmarkReserve measures Reserve and Slot.Release for a sender that
// finds room in the queue (MaxUnacked), as a sequential sender mostly
// does.
func BenchmarkReserve(b *testing.B) {
	st := New(Config{})
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		s, err := st.Reserve(ctx)
		if err != nil || !s.Held() {
			b.Fatal(s.Held(), err)
		}
		s.Release()
	}
}
