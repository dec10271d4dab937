package main

import (
	"context"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// runLatency measures, a.samples times with idle gaps, how long a lone
// tracked message takes to DELIVERED_TO_SERVER, and the round trip of an
// IQ ping to the server from a plain mellium session (the second account).
//
// The lone message carries neither a receipt request nor <markable/>, so
// that only the stream-management ack can move it: on Prosody a receipt
// usually arrives before the ack and would hide it.
func runLatency(ctx context.Context, a *childArgs) result {
	var res result
	if len(a.jids) < 2 {
		res.Error = "latency needs two accounts"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	to, err := jid.Parse(a.to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	c, err := dialTracked(ctx, a, xmpptrack.Config{})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer c.Close()
	p, err := dialPlain(ctx, a, a.jids[1], a.passwords[1], false, 0)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer p.close()
	server := jid.MustParse(p.s.LocalAddr().Domainpart())

	time.Sleep(a.gap) // let log-in traffic (carbons, presence) settle
	for i := range a.samples {
		start := time.Now()
		if err := ping.Send(ctx, p.s, server); err != nil {
			res.Error = fmt.Sprintf("ping: %v", err)
			return res
		}
		res.PingRTT = append(res.PingRTT, seconds(time.Since(start)))
		time.Sleep(a.gap / 4)

		start = time.Now()
		t, err := c.Send(ctx, xmpptrack.Message{To: to, Body: body(i), NoReceipt: true, NoMarkable: true})
		if err != nil {
			res.Error = fmt.Sprintf("send: %v", err)
			return res
		}
		if _, err := t.Wait(ctx, tracking.DeliveredToServer); err != nil {
			res.Error = fmt.Sprintf("wait: %v", err)
			return res
		}
		res.AckLatency = append(res.AckLatency, seconds(time.Since(start)))
		t.Close()
		time.Sleep(a.gap)
	}
	res.N = a.samples
	res.Complete = true
	return res
}
