package main

import (
	"context"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"
)

// runOffline sends a.n messages from a plain mellium session (no stream
// management) to an account that is offline (a.to, through a server that
// archives them), as fast as the session writes, then sends an IQ ping to
// the server: the server processes a session's stanzas in order, so its
// answer means it processed every message. ToServer is the time until that
// answer, the plain counterpart of the tracked sender's last ack.
func runOffline(ctx context.Context, a *childArgs) result {
	res := result{N: a.n, Senders: 1}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	to, err := jid.Parse(a.to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	p, err := dialPlain(ctx, a, a.jids[0], a.passwords[0], false, a.n)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer p.close()
	server := jid.MustParse(p.s.LocalAddr().Domainpart())
	time.Sleep(200 * time.Millisecond) // log-in traffic settles
	cpu0 := cpuNow()
	t0 := time.Now()
	for i := range a.n {
		if err := p.send(ctx, to, i); err != nil {
			res.Error = fmt.Sprintf("send %d: %v", i, err)
			return res
		}
	}
	res.Written = seconds(time.Since(t0))
	if err := ping.Send(ctx, p.s, server); err != nil {
		res.Error = fmt.Sprintf("ping: %v", err)
		return res
	}
	res.ToServer = seconds(time.Since(t0))
	res.CPU = seconds(cpuNow() - cpu0)
	res.CntServer = a.n
	res.Complete = true
	return res
}
