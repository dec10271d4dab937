package sm

import "time"

// Stanza is a stanza written while stream management was on, as reported
// to the callbacks of Config.
type Stanza struct {
	// Seq is the stanza's number in its stream management session: the
	// value of h that acknowledges it (modulo 2^32). A stanza retransmitted
	// after resumption gets a new number.
	Seq uint32
	// Name is "message", "presence" or "iq".
	Name string
	// ID and To are the stanza's id and to attributes, entity-decoded; ""
	// when absent.
	ID, To string
	// Raw holds the stanza exactly as written to the stream. It is shared:
	// do not modify it.
	Raw []byte
	// Sent is when the stanza was first written (a retransmitted or
	// re-sent copy keeps the time of the original).
	Sent time.Time
	// Ambiguous says the stanza may have reached the server on an earlier
	// stream: a resumption took it for ambiguous (see Config.OnAmbiguous)
	// and its fate is not settled. Given to State.Restore with a zero Seq,
	// it makes a resumption hold the stanza back again whatever its h. The
	// callbacks report it as well (OnAmbiguous, OnLost and the Policy's,
	// OnAcked for a stanza ResolveAmbiguous settled), so that a caller can
	// persist the doubt; a copy written again on a stream has its own
	// number and is not ambiguous.
	Ambiguous bool
}

// entry is a stanza kept until the server acknowledges it.
type entry struct {
	seq    uint32
	kind   kind
	sent   int64  // Unix nanoseconds of the first write
	ord    uint64 // order of the first write, kept by the copies written again
	id, to string
	raw    []byte
	// unsure marks a stanza restored without a recorded number (see
	// State.Restore): an h that covers its assumed number does not prove
	// that the server got it, so the h never settles it.
	unsure bool
	// doubt marks a stanza that may have reached the server on an earlier
	// stream (Stanza.Ambiguous, or held back by a resumption): an h does
	// not tell, so a resumption always treats it as ambiguous.
	doubt bool
}

func (e *entry) stanza() Stanza {
	return Stanza{
		Seq:  e.seq,
		Name: e.kind.stanzaName(),
		ID:   e.id,
		To:   e.to,
		Raw:  e.raw,
		Sent: time.Unix(0, e.sent),

		Ambiguous: e.doubt,
	}
}

// queue is a FIFO ring of entries.
type queue struct {
	buf  []entry
	head int
	n    int
}

func (q *queue) len() int { return q.n }

func (q *queue) push(e entry) {
	if q.n == len(q.buf) {
		nb := make([]entry, max(16, 2*len(q.buf)))
		q.copyTo(nb)
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
}

// pop removes and returns the oldest entry. The queue must not be empty.
func (q *queue) pop() entry {
	e := q.buf[q.head]
	q.buf[q.head] = entry{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 1024 {
			q.buf = nil // release the memory of a past backlog
		}
	}
	return e
}

// drain removes every entry and appends them, oldest first, to dst.
func (q *queue) drain(dst []entry) []entry {
	for q.n > 0 {
		dst = append(dst, q.pop())
	}
	return dst
}

func (q *queue) copyTo(dst []entry) {
	for i := range q.n {
		dst[i] = q.buf[(q.head+i)%len(q.buf)]
	}
}
