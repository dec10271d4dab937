package sm

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
)

// TestSendAckContext: SendAck is the one exported way to send an ack of
// one's own, context first: a context that is done already writes
// nothing, and one that never ends writes the ack bounded by
// Config.Handled, recorded as told.
func TestSendAckContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, name := range []string{"WriteAck"} {
			if _, ok := reflect.TypeFor[*State]().MethodByName(name); ok {
				t.Errorf("State has %s: SendAck is to be the only exported way to send an ack", name)
			}
		}
		srv := newFakeServer(t)
		st := New(Config{Handled: func(uint32) uint32 { return 1 }})
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for range 2 {
			c.sc.send(`<message from='peer@example.org/x' type='chat'><body>x</body></message>`)
		}
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := st.SendAck(ctx, c.sess); !errors.Is(err, context.Canceled) {
			t.Errorf("SendAck with a canceled context: %v, want context.Canceled", err)
		}
		synctest.Wait()
		if _, _, acks, _ := srv.snapshot(); len(acks) > 0 {
			t.Errorf("the server got %v after SendAck with a canceled context, want nothing", acks)
		}
		if err := st.SendAck(context.Background(), c.sess); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if _, _, acks, _ := srv.snapshot(); !slices.Equal(acks, []uint32{1}) {
			t.Errorf("acks %v, want [1] (2 received, 1 handled)", acks)
		}
		if r := st.Resumption(); r.Told != 1 {
			t.Errorf("told %d, want 1", r.Told)
		}
		c.close()
	})
}
