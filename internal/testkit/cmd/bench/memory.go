package main

import (
	"context"
	"path/filepath"
	"strconv"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// runPending measures the memory of o.pendingN trackers pending to an
// offline account, through a Prosody that archives what it cannot deliver.
func (b *bench) runPending(ctx context.Context) (*pendingResult, error) {
	o := b.opts
	b.logf("starting prosody (archive on) for %d pending messages", o.pendingN)
	// Archiving is what limits the pace: about 400 messages per second,
	// the server's CPU (a RAM file system does not change it).
	srv, err := testserver.Launch(ctx, testserver.Prosody, testserver.Options{Accounts: []string{"pender", "offline"}})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	env := &serverEnv{srv: srv, addr: srv.Addr(), to: srv.JID("offline").String()}
	args := append(env.args(rolePending, "pender"), "-n", strconv.Itoa(o.pendingN), "-timeout", (10 * time.Minute).String())
	if o.profileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(o.profileDir, "pending.pprof"))
	}
	c, err := startChild(ctx, args, env.passwords("pender"))
	if err != nil {
		return nil, err
	}
	res, p, err := c.wait()
	pr := &pendingResult{res: res, proc: p}
	if err == nil {
		b.logf("pending: %d trackers pending; RSS %s -> %s, heap %s -> %s, acked in %.1f s; sender CPU %.1f s (process %.1f s), server CPU %.1f s",
			res.Pending, mb(res.RSSBefore), mb(res.RSSAfter), mb(res.HeapBefore), mb(res.HeapAfter), res.ToServer, res.CPU, p.CPU, treeCPU(srv.PID()))
	}
	return pr, err
}
