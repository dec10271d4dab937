package sm

import (
	"bytes"
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
		rs += burst(b, n)
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
