package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Targets of the second round of performance work, per round against
// plain mellium in the same round.
const (
	minProsodyThroughput  = 0.85 // tracked throughput / plain on Prosody
	minEjabberdThroughput = 0.95 // the same on ejabberd
	maxServerCPURatio     = 1.2  // server CPU per run, tracked / plain (Prosody)
	maxSenderCPURatio     = 1.3  // sender CPU per message, tracked / plain
)

// reportRounds prints, for each server, the per-round ratios of the
// xmpptrack sender to plain mellium: throughput, the server's CPU during
// the run and the sender's CPU per message; the medians are checked
// against the targets.
func (b *bench) reportRounds(w io.Writer) {
	fmt.Fprintln(w, "\nper round, xmpptrack / plain in the same round (server CPU: seconds of the server's CPU during each run, xmpptrack vs plain):")
	for _, sr := range b.servers {
		xt, pl := sr.runs[sXmpptrack], sr.runs[sPlain]
		if xt == nil || pl == nil {
			continue
		}
		var cpu []string
		for i := range min(len(xt), len(pl)) {
			cpu = append(cpu, fmt.Sprintf("%.2f/%.2f", xt[i].serverCPU, pl[i].serverCPU))
		}
		serverCPU := func(r run) float64 {
			if !r.usable() {
				return math.NaN()
			}
			return r.serverCPU
		}
		tp, sc, cp := ratios(xt, pl, run.throughput), ratios(xt, pl, serverCPU), ratios(xt, pl, run.cpuPer1k)
		wc := ratios(xt, pl, run.workloadServerCPU)
		minTP := minEjabberdThroughput
		if sr.kind == "prosody" {
			minTP = minProsodyThroughput
		}
		fmt.Fprintf(w, "  %s: throughput %s (median %.2f, target >= %.2f); server CPU s %s, ratio %s (median %.2f, target <= %.1f on Prosody); sender CPU per message %s (median %.2f, target <= %.1f)",
			sr.kind, list(tp), median(tp), minTP, strings.Join(cpu, ", "), list(sc), median(sc), maxServerCPURatio, list(cp), median(cp), maxSenderCPURatio)
		if len(wc) > 0 {
			fmt.Fprintf(w, "; server CPU during the workload alone (log-in and log-out left out), ratio %s (median %.2f)", list(wc), median(wc))
		}
		fmt.Fprintln(w)
	}
}

// workloadServerCPU is the server's CPU seconds from the run's first
// send to its last marker (result.WatchCPU), NaN if the child did not
// read it or the run is not usable.
func (r run) workloadServerCPU() float64 {
	if !r.usable() || len(r.res.WatchCPU) == 0 {
		return math.NaN()
	}
	return r.res.WatchCPU[0]
}

func list(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, " ")
}
