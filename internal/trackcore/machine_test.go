package trackcore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/looplab/fsm"
)

// designTable is the transition table written out by hand, cell by cell,
// independently of the looplab definition: rows are the current state,
// columns the requested one (DTS, DTR, SBR, ABORTED, TIMED_OUT, CLOSED,
// ERROR). "ok" moves and fires callbacks once, "-" is a
// silent no-op, "no" is refused, "end" keeps the state and ends tracking.
var designTable = map[MessageState][7]string{
	InTransit:            {"ok", "ok", "ok", "ok", "ok", "ok", "ok"},
	DeliveredToServer:    {"-", "ok", "ok", "no", "ok", "ok", "ok"},
	DeliveredToRecipient: {"no", "-", "ok", "no", "end", "end", "no"},
	SeenByRecipient:      {"no", "no", "-", "no", "no", "no", "no"},
	Aborted:              {"no", "no", "no", "no", "no", "no", "no"},
	TimedOut:             {"no", "no", "no", "no", "no", "no", "no"},
	Closed:               {"no", "no", "no", "no", "no", "no", "no"},
	Error:                {"no", "ok", "ok", "no", "end", "end", "-"},
}

// trackerIn returns a standalone tracker forced into state from, settled when
// that state is final.
func trackerIn(from MessageState) *MessageTracker {
	t := NewStandalone[Response]("m1")
	w := uint32(from)
	if from.IsFinal() {
		w |= settledBit
	}
	t.word.Store(t.word.Load()&^stateMask | w) // the id's bits stay
	return t
}

func TestTransitionTable(t *testing.T) {
	for from := InTransit; from < NumStates; from++ {
		for col, cell := range designTable[from] {
			to := MessageState(col + 1)
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					tr := trackerIn(from)
					var calls atomic.Int32
					var got [2]MessageState
					tr.OnStateChange(func(f, d MessageState, _ *Response) {
						calls.Add(1)
						got = [2]MessageState{f, d}
					})
					resp := &Response{ID: "evidence"}
					_, ok := tr.Advance(to, resp)
					synctest.Wait()
					switch cell {
					case "ok":
						if !ok || tr.State() != to || calls.Load() != 1 || got != [2]MessageState{from, to} {
							t.Fatalf("ok=%v state=%v calls=%d got=%v", ok, tr.State(), calls.Load(), got)
						}
						if tr.Response() != resp {
							t.Fatalf("response not recorded")
						}
						if tr.Settled() != to.IsFinal() {
							t.Fatalf("settled=%v for %v", tr.Settled(), to)
						}
					case "-", "end":
						if !ok || tr.State() != from || calls.Load() != 0 {
							t.Fatalf("ok=%v state=%v calls=%d", ok, tr.State(), calls.Load())
						}
						if want := cell == "end" || from.IsFinal(); tr.Settled() != want {
							t.Fatalf("settled=%v, want %v", tr.Settled(), want)
						}
					case "no":
						if ok || tr.State() != from || calls.Load() != 0 {
							t.Fatalf("ok=%v state=%v calls=%d", ok, tr.State(), calls.Load())
						}
						if tr.Settled() != from.IsFinal() {
							t.Fatalf("refusal changed settlement")
						}
					}
				})
			})
		}
	}
}

// TestTableMatchesLooplab runs looplab/fsm on the same definition for every
// (state, event) pair and checks that the compiled table agrees.
func TestTableMatchesLooplab(t *testing.T) {
	ctx := context.Background()
	for from := InTransit; from < NumStates; from++ {
		for to := DeliveredToServer; to < NumStates; to++ {
			f := fsm.NewFSM(from.String(), definition(), nil)
			err := f.Event(ctx, eventNames[to])
			next := table[from][to]
			var noTransition fsm.NoTransitionError
			var invalid fsm.InvalidEventError
			switch {
			case err == nil:
				if next == refused || next != uint8(mustParse(t, f.Current())) || MessageState(next) == from {
					t.Errorf("%v+%s: looplab moved to %s, table says %d", from, eventNames[to], f.Current(), next)
				}
			case errors.As(err, &noTransition):
				if MessageState(next) != from {
					t.Errorf("%v+%s: looplab self-loop, table says %d", from, eventNames[to], next)
				}
			case errors.As(err, &invalid):
				if next != refused {
					t.Errorf("%v+%s: looplab refuses, table says %d", from, eventNames[to], next)
				}
			default:
				t.Errorf("%v+%s: unexpected looplab error %v", from, eventNames[to], err)
			}
		}
	}
}

func mustParse(t *testing.T, name string) MessageState {
	s, ok := ParseState(name)
	if !ok {
		t.Fatalf("unknown state %q", name)
	}
	return s
}

func TestStateNames(t *testing.T) {
	for s := InTransit; s < NumStates; s++ {
		if got, ok := ParseState(s.String()); !ok || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), got, ok)
		}
	}
	if got := MessageState(42).String(); got != "MessageState(42)" {
		t.Errorf("unknown state String() = %q", got)
	}
	if Error.IsFinal() || !SeenByRecipient.IsFinal() || DeliveredToRecipient.IsFinal() {
		t.Error("IsFinal disagrees with the design")
	}
}

func TestDiagram(t *testing.T) {
	d := Diagram()
	for _, want := range []string{"stateDiagram-v2", "IN_TRANSIT --> DELIVERED_TO_SERVER: server_ack", "ERROR --> DELIVERED_TO_RECIPIENT: delivered"} {
		if !strings.Contains(d, want) {
			t.Errorf("diagram lacks %q:\n%s", want, d)
		}
	}
}
