//go:build linux

package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func init() { systemChildren["cursors"] = childCursors }

// childCursors opens the store with Config.Shared and does what each line
// of its standard input says, answering each with one line, "ok" and
// numbers, or "error" and the error:
//   - "commit LINE": commits the batch of LINE (see lineBatch); the
//     numbers are its cursors;
//   - "prune": prunes what was settled before an hour from now; the
//     number is how many messages it pruned;
//   - "burst PREFIX N": commits N messages PREFIX-i, each followed by a
//     change to DELIVERED_TO_SERVER, one transaction each; the numbers are
//     their cursors in commit order.
//
// It closes the store at the end of its input.
func childCursors(path string) {
	ctx := context.Background()
	s, err := OpenConfig(ctx, path, Config{Shared: true, Retention: -1})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer s.Close()
	commit := func(line string) ([]int64, error) {
		b, err := lineBatch(line)
		if err != nil {
			return nil, err
		}
		err = s.Commit(ctx, b)
		return cursorsOf(b), err
	}
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
		var got []int64
		var err error
		switch cmd, arg, _ := strings.Cut(sc.Text(), " "); cmd {
		case "commit":
			got, err = commit(arg)
		case "prune":
			var k int
			k, err = s.Prune(ctx, time.Now().Add(time.Hour))
			got = []int64{int64(k)}
		case "burst":
			var prefix string
			var n int
			if _, err = fmt.Sscan(arg, &prefix, &n); err != nil {
				break
			}
			for i := 0; i < n && err == nil; i++ {
				id := fmt.Sprint(prefix, "-", i)
				var c []int64
				c, err = commit("+" + id)
				got = append(got, c...)
				if err == nil {
					c, err = commit(id + ":DELIVERED_TO_SERVER")
					got = append(got, c...)
				}
			}
		default:
			err = fmt.Errorf("unknown command %q", sc.Text())
		}
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println("ok", strings.Trim(fmt.Sprint(got), "[]"))
	}
}

// peer is a childCursors process.
type peer struct {
	in  io.Writer
	out *bufio.Scanner
}

// do sends cmd to the peer and returns the numbers it answers.
func (p *peer) do(cmd string) ([]int64, error) {
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		return nil, err
	}
	return p.answer(cmd)
}

// answer returns the numbers of the peer's answer to cmd.
func (p *peer) answer(cmd string) ([]int64, error) {
	if !p.out.Scan() {
		return nil, fmt.Errorf("%s: the child said nothing (%v)", cmd, p.out.Err())
	}
	rest, ok := strings.CutPrefix(p.out.Text(), "ok")
	if !ok {
		return nil, fmt.Errorf("%s: child: %s", cmd, p.out.Text())
	}
	var got []int64
	for w := range strings.FieldsSeq(rest) {
		n, err := strconv.ParseInt(w, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: child: %s", cmd, p.out.Text())
		}
		got = append(got, n)
	}
	return got, nil
}

// TestCursorOtherProcess: another process commits to the file (both
// stores with Config.Shared) in turns with this one's committer, which
// keeps the highest cursor from one transaction to the next: messages and
// changes, alone and together, and a Prune of the message that holds the
// highest cursor. Every cursor is above the one committed before it,
// whichever process committed it, and a follower reading the changes
// after the last cursor it read after each commit reads them all, in that
// order. Then both commit at once while the follower reads: each one's
// cursors increase, none is taken twice, and the follower misses none.
// With the committer trusting its kept cursor, its first commit after the
// other process's takes a cursor that process took.
func TestCursorOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	a, err := OpenConfig(t.Context(), path, Config{Shared: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, in, out := childIn(t, "cursors", path)
	p := &peer{in: in, out: out}
	f := &follower{s: a}
	var want []int64
	step := func(got []int64) {
		t.Helper()
		want = append(want, got...)
		f.read(t)
		checkFeed(t, want, f.got)
	}
	mine := func(line string) {
		t.Helper()
		step(commitLine(t, a, line))
	}
	theirs := func(line string) {
		t.Helper()
		got, err := p.do("commit " + line)
		if err != nil {
			t.Fatal(err)
		}
		step(got)
	}
	for i := range 3 {
		m, o, q := fmt.Sprint("m", i), fmt.Sprint("o", i), fmt.Sprint("q", i)
		mine("+" + m)
		theirs(m + ":DELIVERED_TO_SERVER") // a change: no message row has its cursor
		mine("+" + m + "x")
		theirs("+" + o) // a message: no change row has its cursor
		mine(o + ":DELIVERED_TO_SERVER")
		theirs("+" + q + " " + m + ":DELIVERED_TO_RECIPIENT")
		mine("+" + m + "y " + q + ":DELIVERED_TO_SERVER")
		// The other process settles q and prunes it: the highest cursor
		// is left as a tombstone only.
		theirs(q + ":SEEN_BY_RECIPIENT")
		if k, err := p.do("prune"); err != nil || !slices.Equal(k, []int64{1}) {
			t.Fatalf("the other process pruned %v (%v), want 1", k, err)
		}
		mine("+" + m + "z")
	}

	// Both at once, the follower reading meanwhile.
	const n = 100
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var ferr error
	wg.Go(func() {
		for ctx.Err() == nil && ferr == nil {
			if ferr = f.poll(); ferr == nil {
				// Woken at a's commits, polling for the other's.
				if err := a.Wait(ctx, f.last); ctx.Err() == nil {
					ferr = err
				}
			}
		}
	})
	burst := fmt.Sprint("burst b ", n)
	if _, err := fmt.Fprintln(p.in, burst); err != nil {
		t.Fatal(err)
	}
	var ours []int64
	for i := range n {
		id := fmt.Sprint("a-", i)
		ours = append(ours, commitLine(t, a, "+"+id)...)
		ours = append(ours, commitLine(t, a, id+":DELIVERED_TO_SERVER")...)
	}
	others, err := p.answer(burst)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	f.read(t)
	// Each one's in its commit order; both merged by cursor, which is
	// the commit order across both if the follower missed none.
	checkIncreasing(t, ours)
	checkIncreasing(t, others)
	burstCursors := append(slices.Clone(ours), others...)
	slices.Sort(burstCursors)
	if len(slices.Compact(slices.Clone(burstCursors))) != len(burstCursors) {
		t.Fatalf("a cursor taken twice in %v", burstCursors)
	}
	checkFeed(t, append(want, burstCursors...), f.got)
}
