package main

import (
	"fmt"
	"io"
	"math"
)

// boundTarget is the throughput ratio, durable store / in-memory, that the
// PostgreSQL issue asks for; reportBound says what database CPU per
// message would allow it.
const boundTarget = 0.7

// peersPer1k is the CPU seconds per 1,000 messages of the XMPP server and
// the responder during the workload (-watch), NaN if the run was not
// usable or they were not watched.
func (r run) peersPer1k() float64 {
	if !r.usable() || len(r.res.WatchCPU) != 2 {
		return math.NaN()
	}
	return (r.res.WatchCPU[0] + r.res.WatchCPU[1]) / float64(r.res.N) * 1000
}

// allCPUPer1k is the CPU seconds per 1,000 messages of every process the
// run's messages cost during the workload: the sender (its store's client
// work included), its database server, the XMPP server and the
// responder.
func (r run) allCPUPer1k() float64 { return r.cpuPer1k() + r.dbCPUPer1k() + r.peersPer1k() }

// busy is the cores of the machine busy during the run's workload.
func (r run) busy() float64 {
	if !r.usable() || r.res.Busy <= 0 {
		return math.NaN()
	}
	return r.res.Busy
}

// bound is what the cores allow a durable sender d against the in-memory
// sender m of the same round, if both rounds keep the cores equally busy:
// the ratio of every process's CPU per message, m's over d's.
//
// ratioAtRate is that ratio with the XMPP server and the responder costing
// per message what they cost in m's round: under other people's load the
// slower durable sender's peers spend more per message (fewer stanzas per
// read and wake-up), which ratio counts against it, so that ratio
// underestimates a slow sender and ratioAtRate overestimates it.
//
// dbFor is the database CPU per message (seconds per 1,000) at which that
// ratio would reach target, everything else costing what it cost in d's
// round; dbForAtRate the same with the XMPP server and the responder
// costing per message what they cost in m's round (they spend less per
// message at m's higher rate, as more stanzas share each read and
// wake-up). Negative: out of reach even with a database that costs
// nothing.
type bound struct {
	ratio, ratioAtRate, dbFor, dbForAtRate float64
}

func cpuBound(m, d run, target float64) bound {
	cm, cd := m.allCPUPer1k(), d.allCPUPer1k()
	if math.IsNaN(cm) || math.IsNaN(cd) || cd <= 0 {
		return bound{math.NaN(), math.NaN(), math.NaN(), math.NaN()}
	}
	return bound{
		ratio:       cm / cd,
		ratioAtRate: cm / (d.cpuPer1k() + d.dbCPUPer1k() + m.peersPer1k()),
		dbFor:       cm/target - (cd - d.dbCPUPer1k()),
		dbForAtRate: dbForWithPeers(m, d, m, target),
	}
}

// dbForWithPeers is the database CPU per message (seconds per 1,000) at
// which durable sender d would reach target against in-memory sender m,
// with the XMPP server and the responder costing per message what they cost
// in the run peers.
func dbForWithPeers(m, d, peers run, target float64) float64 {
	return m.allCPUPer1k()/target - d.cpuPer1k() - peers.peersPer1k()
}

// boundPairs are the senders reportBound compares, each against the
// second: the durable ones against the in-memory client, the SQLite store
// against its floor (package sqlitefloor), two PostgreSQL instances
// against one, the real PostgreSQL store against its floors (package
// pgfloor: what is between them).
var boundPairs = [][2]string{{sSQLite, sXmpptrack}, {sSQLiteFloor, sXmpptrack}, {sSQLite, sSQLiteFloor}, {sDiscard, sXmpptrack},
	{sSQLiteFloor, sDiscard}, {sPostgres, sXmpptrack}, {sPgRows, sXmpptrack}, {sPgTrip, sXmpptrack}, {sPgNoSync, sXmpptrack},
	{sPostgres2, sPostgres}, {sPostgres, sPgRows}, {sPostgres, sPgTrip}}

// reportBound prints, for each pair of boundPairs, every process's CPU
// per message in the same round (once per sender), the ratio the cores
// allow at those costs, and (against the in-memory sender) the database
// CPU per message that boundTarget needs.
func (b *bench) reportBound(w io.Writer) {
	header := false
	printed := map[string]bool{} // the senders whose CPU was printed, by server
	for _, sr := range b.servers {
		for _, p := range boundPairs {
			st, base := sr.runs[p[0]], sr.runs[p[1]]
			if st == nil || base == nil {
				continue
			}
			var ratio, ratioAtRate, dbFor, dbForAtRate []float64
			for i := range min(len(base), len(st)) {
				if bd := cpuBound(base[i], st[i], boundTarget); !math.IsNaN(bd.ratio) {
					ratio, dbFor, dbForAtRate = append(ratio, bd.ratio), append(dbFor, bd.dbFor), append(dbForAtRate, bd.dbForAtRate)
					ratioAtRate = append(ratioAtRate, bd.ratioAtRate)
				}
			}
			if len(ratio) == 0 {
				continue
			}
			if !header {
				fmt.Fprintln(w, "\nwhat the two cores allow a durable store, estimated (every process's CPU during the workload, per round against the other sender in the same round; ms per message, median (range)):")
				header = true
			}
			for _, s := range []struct {
				name string
				runs []run
			}{{p[0], st}, {p[1], base}} {
				if printed[string(sr.kind)+" "+s.name] {
					continue
				}
				printed[string(sr.kind)+" "+s.name] = true
				fmt.Fprintf(w, "  %s: %s: all %s = sender %s + database %s + XMPP server and responder %s; busy cores %s\n", sr.kind, s.name,
					spread(values(s.runs, run.allCPUPer1k), "%.3f"), spread(values(s.runs, run.cpuPer1k), "%.3f"),
					spread(values(s.runs, run.dbCPUPer1k), "%.3f"), spread(values(s.runs, run.peersPer1k), "%.3f"),
					spread(values(s.runs, run.busy), "%.2f"))
			}
			fmt.Fprintf(w, "  %s: %s / %s: throughput ratio the cores allow at these costs if both rounds keep equally many busy (an estimate, not a ceiling) %s, measured %s\n", sr.kind, p[0], p[1],
				spread(ratio, "%.2f"), spread(ratios(st, base, run.throughput), "%.2f"))
			if p[1] == sXmpptrack {
				fmt.Fprintf(w, "  %s: %s / %s: the same with the XMPP server and responder at xmpptrack's cost per message (the loaded bound above underestimates a slower sender, this one overestimates it) %s\n",
					sr.kind, p[0], p[1], spread(ratioAtRate, "%.2f"))
			}
			if p[1] == sXmpptrack && p[0] != sSQLiteFloor && p[0] != sDiscard {
				fmt.Fprintf(w, "  %s: %s: database CPU for %.1f×: %s with the rest at these costs, %s with the XMPP server and responder at xmpptrack's (negative: out of reach)\n",
					sr.kind, p[0], boundTarget, spread(dbFor, "%.3f"), spread(dbForAtRate, "%.3f"))
				b.reportPaced(w, sr, p[0], printed)
			}
		}
	}
}

// reportPaced prints, for each paced in-memory sender (pacedPrefix) of
// the run, every process's CPU per message, and the database CPU per
// message at which durable would reach boundTarget with the XMPP server
// and the responder costing what they cost at that pace: the sender's
// pace changes what the other processes spend per message (fewer
// stanzas per read and wake-up at a lower one). A paced sender's CPU is
// printed once per server (printed, as in reportBound).
func (b *bench) reportPaced(w io.Writer, sr *serverResults, durable string, printed map[string]bool) {
	xt, st := sr.runs[sXmpptrack], sr.runs[durable]
	for _, s := range b.opts.senders {
		rate, ok := pacedSender(s)
		pr := sr.runs[s]
		if !ok || pr == nil {
			continue
		}
		var dbFor []float64
		for i := range min(len(xt), len(st), len(pr)) {
			if v := dbForWithPeers(xt[i], st[i], pr[i], boundTarget); !math.IsNaN(v) {
				dbFor = append(dbFor, v)
			}
		}
		made := spread(values(pr, run.throughput), "%.0f")
		if key := string(sr.kind) + " " + s; !printed[key] {
			printed[key] = true
			fmt.Fprintf(w, "  %s: %s (xmpptrack paced, target %.0f msg/s, made %s msg/s): all %s = sender %s + XMPP server and responder %s; busy cores %s\n",
				sr.kind, s, rate, made, spread(values(pr, run.allCPUPer1k), "%.3f"),
				spread(values(pr, run.cpuPer1k), "%.3f"), spread(values(pr, run.peersPer1k), "%.3f"), spread(values(pr, run.busy), "%.2f"))
		}
		fmt.Fprintf(w, "  %s: %s: database CPU for %.1f× with the XMPP server and responder at their cost at the %s msg/s %s made (target %.0f): %s\n",
			sr.kind, durable, boundTarget, made, s, rate, spread(dbFor, "%.3f"))
	}
}
