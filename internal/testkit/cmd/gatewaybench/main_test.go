package main

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// TestArrivals: wait returns once the recipient's count reaches the number
// asked for, whether it got there before or while waiting, and reports a
// count that never comes.
func TestArrivals(t *testing.T) {
	var a arrivals
	a.add()
	if !a.wait(1, time.Minute) {
		t.Fatal("wait(1) after one arrival: false")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 500 {
			a.add()
		}
	})
	if !a.wait(501, time.Minute) {
		t.Fatalf("wait(501): false with %d arrived", a.load())
	}
	wg.Wait()
	if a.wait(502, time.Millisecond) {
		t.Fatal("wait(502) with 501 arrived: true")
	}
	a.add() // after a wait that gave up: no close of a stale channel
	if got := a.load(); got != 502 {
		t.Fatalf("load %d, want 502", got)
	}
}

// TestDirectFirst: with -order alternate, the rounds take turns at which
// side runs first; with direct-first the library always does.
func TestDirectFirst(t *testing.T) {
	for r, want := range []bool{true, false, true, false} {
		if got := directFirst("alternate", r); got != want {
			t.Errorf("alternate, round %d: directFirst %v", r, got)
		}
		if !directFirst("direct-first", r) {
			t.Errorf("direct-first, round %d: gateway first", r)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{0.9, 0.6, 0.7}, 0.7}, {[]float64{1, 0.5, 0.75, 0.25}, 0.625}} {
		if got := median(c.v); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestRecipientWait: the parent asks the recipient's process for a count
// and reads its answer: reached, or not with the count it got.
func TestRecipientWait(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() { // the child's side of the protocol
		in := bufio.NewScanner(inR)
		for in.Scan() {
			switch in.Text() {
			case "10":
				fmt.Fprintln(outW, "ok")
			default:
				fmt.Fprintln(outW, "timeout 10")
			}
		}
		outW.Close()
	}()
	r := &recipient{in: inW, out: bufio.NewReader(outR)}
	if ok, got, err := r.wait(10); !ok || got != 10 || err != nil {
		t.Errorf("wait(10): %v %d %v", ok, got, err)
	}
	if ok, got, err := r.wait(12); ok || got != 10 || err != nil {
		t.Errorf("wait(12) with 10 arrived: %v %d %v", ok, got, err)
	}
	inW.Close()
	if _, _, err := r.wait(13); err == nil {
		t.Error("wait after the child ended: no error")
	}
}
