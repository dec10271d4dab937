package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-role") {
		os.Exit(childMain(os.Args[1:]))
	}
	opts, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runBench(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runBench runs the whole benchmark and prints the report on out.
func runBench(ctx context.Context, o *options, out, progress io.Writer) error {
	b := &bench{opts: o, log: progress, mach: describeMachine()}
	busy0, total0 := cpuTicks()
	began := time.Now()
	for _, kind := range o.servers {
		sr, err := b.runServer(ctx, kind)
		if err != nil {
			return err
		}
		b.servers = append(b.servers, sr)
	}
	if o.pendingN > 0 {
		pr, err := b.runPending(ctx)
		if err != nil {
			b.notes = append(b.notes, "pending: "+err.Error())
		}
		b.pending = pr
	}
	if o.offlineN > 0 && o.offlineRounds > 0 {
		runs, err := b.runOfflineCompare(ctx)
		if err != nil {
			b.notes = append(b.notes, "offline: "+err.Error())
		}
		b.offline = runs
	}
	busy1, total1 := cpuTicks()
	if total1 > total0 {
		b.mach.BusyPct = 100 * float64(busy1-busy0) / float64(total1-total0)
	}
	b.mach.LoadEnd = loadavg()
	b.elapsed = time.Since(began)
	b.report(out)
	return nil
}

// bench holds the results of one invocation.
type bench struct {
	opts    *options
	log     io.Writer
	mach    *machine
	servers []*serverResults
	pending *pendingResult
	offline []offlineRun
	notes   []string
	elapsed time.Duration
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}
