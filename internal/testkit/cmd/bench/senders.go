package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
)

// runSender runs one sender once with n messages (shared by the ceiling's
// sessions), from the accounts of label, connecting to addr (the server or
// the counting relay).
func (b *bench) runSender(ctx context.Context, env *serverEnv, sender, label string, n int, addr, prof string) run {
	pg := env.srv.PID()
	var before result
	if env.resp != nil {
		before, _ = env.resp.stats(ctx)
	}
	var sc *syscallCount
	var scErr error
	if b.opts.serverSyscalls {
		sc, scErr = startSyscallCount(ctx, pg)
	}
	cpu0, io0 := treeUsage(pg)
	self0 := cpuNow()
	busy0, total0 := cpuTicks()
	began := time.Now()
	var r run
	locals := senderAccounts(sender, label, b.opts.ceilingSenders)
	if sender == sAioxmpp {
		r = b.runAioxmpp(ctx, env, locals[0], n, addr)
	} else {
		args := b.opts.senderFlags(sender, len(locals), env.watchArgs(pg))
		if sender == sCeiling || sender == sCeilingSM {
			n = max(n/len(locals), 1) // the ceiling's sessions share the n messages
		}
		e := *env
		e.addr = addr
		args = append(args, e.args("", locals...)[1:]...)
		args = append(args, "-n", strconv.Itoa(n), "-timeout", b.opts.runTimeout.String())
		if prof != "" {
			args = append(args, "-cpuprofile", prof)
		}
		c, err := startChild(ctx, args, env.passwords(locals...))
		if err != nil {
			r.err = err
		} else {
			r.res, r.proc, r.err = c.wait()
		}
	}
	cpu1, io1 := treeUsage(pg)
	r.serverCPU, r.serverIO = cpu1-cpu0, io1.Sub(io0)
	if m, err := sc.stop(); err != nil {
		scErr = err
	} else {
		r.syscalls = m
	}
	if scErr != nil {
		r.syscallsErr = "server system calls not counted: " + scErr.Error()
	}
	var respCPU float64
	if env.resp != nil {
		if after, err := env.resp.stats(ctx); err == nil {
			r.dropped = after.Dropped - before.Dropped
			respCPU = after.CPU - before.CPU
		}
	}
	// Busy CPU time of the whole machine, minus ours (server, sender,
	// responder, this program): what other processes took during the run.
	self := (cpuNow() - self0).Seconds()
	r.otherLoad = otherCores(busy0, total0, time.Since(began).Seconds(), r.serverCPU+r.proc.CPU+respCPU+self)
	return r
}

// pacedPrefix names an xmpptrack sender paced at a rate of its own:
// "xmpptrack-r3000" sends 3,000 messages per second (open loop, from
// -send-goroutines goroutines), whatever -send-rate says. Run beside a
// durable sender, it tells what the XMPP server and the responder cost
// per message at a durable sender's pace (see reportBound).
const pacedPrefix = sXmpptrack + "-r"

// pacedSender returns the rate of an xmpptrack sender named
// xmpptrack-rN; ok is false for other names.
func pacedSender(sender string) (rate float64, ok bool) {
	if rest, found := strings.CutPrefix(sender, pacedPrefix); found {
		if n, err := strconv.Atoi(rest); err == nil && n > 0 {
			return float64(n), true
		}
	}
	return 0, false
}

// windowSender returns the window of an xmpptrack sender named
// xmpptrack-wN; ok is false for other names.
func windowSender(sender string) (w int, ok bool) {
	if w, ok = offlineWindow(sender, 0); ok && strings.HasPrefix(sender, oWindowPrefix) {
		return w, true
	}
	return 0, false
}

// runAioxmpp runs the aioxmpp sender of internal/testkit/interop.
func (b *bench) runAioxmpp(ctx context.Context, env *serverEnv, local string, n int, addr string) run {
	var cert []byte
	if env.cafile != "" {
		cert = env.srv.CertPEM()
	}
	start := time.Now()
	ar, err := interop.RunAioxmppBench(ctx, interop.BenchOptions{
		Addr: addr, JID: env.srv.JID(local).String(), Password: env.srv.Password(local), CertPEM: cert,
		// Answers the responder dropped never come: the script then waits
		// for its timeout, here a floor of 250 messages per second.
		To: env.to, Count: n, Timeout: min(b.opts.runTimeout, 15*time.Second+time.Duration(n)*4*time.Millisecond),
	})
	r := run{err: err}
	r.res = result{
		Role: sAioxmpp, N: ar.Count, Senders: 1, SM: ar.SM, Complete: ar.Complete,
		ToServer: ar.ToServer.All.Seconds(), ToRecipient: ar.ToRecipient.All.Seconds(), Seen: ar.Seen.All.Seconds(),
		CntServer: ar.ToServer.Count, CntRecip: ar.ToRecipient.Count, CntSeen: ar.Seen.Count, Failed: ar.Failed,
		CPU: ar.CPU.Seconds(), Error: ar.Error,
	}
	r.proc = proc{CPU: ar.CPUTotal.Seconds(), MaxRSS: ar.PeakRSS, Wall: time.Since(start).Seconds()}
	return r
}

// watchArgs asks a sender's child to read the CPU of the server (pid
// pg) and of the responder over its workload (-watch); none without a
// responder.
func (env *serverEnv) watchArgs(pg int) []string {
	if env.resp == nil {
		return nil
	}
	return []string{"-watch", fmt.Sprintf("%d,%d", pg, env.resp.cmd.Process.Pid)}
}
