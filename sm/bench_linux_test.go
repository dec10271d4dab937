//go:build linux

package sm

import (
	"testing"
)

// BenchmarkInboundStanza measures the inbound path per stanza read alone
// while an answer to our <r/> is awaited: the tee's write (where the State
// tells what is unread, a look at the socket's receive queue, skipped for
// a while after one that found nothing), the scanner's count and the
// handler's end (see behind.go). "cannot tell" is the path where no socket
// is found, as on other systems.
func BenchmarkInboundStanza(b *testing.B) {
	for _, tc := range []struct {
		name          string
		tells, behind bool
	}{
		{"socket caught up", true, false},
		{"socket behind", true, true},
		{"cannot tell", false, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			near, far := loopbackPair(b, 0)
			if tc.behind {
				far.Write([]byte("<unread/>")) // never read: every read looks
			}
			st := New(Config{})
			in, _ := st.Tees()
			in.Write([]byte(testHeader))
			st.mu.Lock()
			c := st.conn
			c.inActive, c.smOn, c.rWait = true, true, timeNow()
			if tc.tells {
				c.unread = unreadOf(near, socketOf(near))
			}
			c.startReadsLocked(timeNow())
			st.mu.Unlock()
			b.SetBytes(int64(len(benchMessage)))
			b.ReportAllocs()
			for b.Loop() {
				c.handling.Store(true)
				in.Write(benchMessage)
				c.doneHandling()
			}
		})
	}
}
