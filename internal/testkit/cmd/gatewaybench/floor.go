package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/xmpptrack/xmpptrack"
)

// The floor (-floor): what the HTTP exchange alone costs, with the same
// load client, the same server settings and the same requests as the
// gateway's runs, against a bare net/http handler that does what net/http
// makes every handler do and nothing of the gateway's: it reads the body to
// its end, waits until it is released, and answers 202 with the gateway's
// headers and an answer of the same size. Requests are released at the
// gateway's throughput over the rounds, in groups every few milliseconds
// (as the send window lets the gateway's sends through on each ack), so
// that each is held about as long as the gateway holds it: a held request
// costs net/http more than one answered at once (its background read runs,
// and the connection idles between the request and the answer).

// floorTick is how often the floor releases the requests it holds.
const floorTick = 2 * time.Millisecond

// floorHandler is the bare handler: release delivers one token per request
// to answer.
func floorHandler(release <-chan struct{}, answer []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [512]byte
		for {
			if _, err := r.Body.Read(buf[:]); err != nil {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{"no-store"}
		w.WriteHeader(http.StatusAccepted)
		w.Write(answer)
	})
}

// floorAnswer is an answer of the size of the gateway's to a plain POST.
func floorAnswer() []byte {
	return []byte(`{"id":"` + xmpptrack.NewID() + `","state":"IN_TRANSIT","cursor":"1234567","settled":false}` + "\n")
}

// pace releases rate requests per second on release, every floorTick,
// until ctx ends: by each tick, as many as the time since it started
// allows. A token no request waits for is dropped once release is full.
func pace(ctx context.Context, rate float64, release chan<- struct{}) {
	t := time.NewTicker(floorTick)
	defer t.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int64(rate*now.Sub(start).Seconds() + 1e-6)
			for ; sent < due; sent++ {
				select {
				case release <- struct{}{}:
				default:
				}
			}
		}
	}
}

// floorCPU is what the floor's runs cost per request, and the bound it puts
// on the throughput ratio.
type floorCPU struct {
	server, load time.Duration // per request
	// bound is the library's CPU per message over the rounds, every
	// process counted, against that plus the floor's: the ratio the
	// gateway would reach if it added nothing but the HTTP exchange to the
	// library's work, on cores that the processes saturate.
	bound float64
}

func floorOf(direct cpuUse, directMsgs int, server, load time.Duration, requests int) floorCPU {
	d := direct.total() / time.Duration(directMsgs)
	f := floorCPU{server: server / time.Duration(requests), load: load / time.Duration(requests)}
	f.bound = d.Seconds() / (d + f.server + f.load).Seconds()
	return f
}

// floorMain is the floor's server, a child process (this program with
// -floor-server): it serves the bare handler on the listener its parent hands it
// as file descriptor 3, releasing requests at rate per second, until its
// standard input ends.
func floorMain(conc int, rate float64) error {
	f := os.NewFile(3, "floor listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{}, conc)
	go pace(ctx, rate, release)
	srv := httpServer(floorHandler(release, floorAnswer()))
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Println("ready")
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

// runFloor starts the floor's server and a load client of its own, runs
// rounds runs of n requests released at rate per second, and prints what
// each cost.
func runFloor(network, client string, conc, depth, n, rounds int, rate float64, body []byte, s summary) error {
	ln, err := listen(network)
	if err != nil {
		return err
	}
	defer ln.Close()
	lf, err := listenerFile(ln)
	if err != nil {
		return err
	}
	srv, err := startChildFiles("floor server", nil, []*os.File{lf}, 4096, "-floor-server",
		"-c", strconv.Itoa(conc), "-floor-rate", strconv.FormatFloat(rate, 'f', 0, 64))
	lf.Close() // the child has its own
	if err != nil {
		return err
	}
	defer srv.close()
	load, err := startLoad(ln.Addr().String(), client, conc, depth, false, body)
	if err != nil {
		return err
	}
	defer load.close()
	if _, err := load.post(min(n, 2000)); err != nil { // warm-up, untimed
		return err
	}
	var server, cl time.Duration
	for r := range rounds {
		c0 := treeCPU(srv.pid(), load.pid())
		start := time.Now()
		if _, err := load.post(n); err != nil {
			return err
		}
		d := time.Since(start)
		c1 := treeCPU(srv.pid(), load.pid())
		server, cl = server+c1[0]-c0[0], cl+c1[1]-c0[1]
		fmt.Printf("floor run %d (%s): %.0f requests/s, CPU per request: server %s, load client %s\n", r+1, loadavg(),
			float64(n)/d.Seconds(), perMsg(c1[0]-c0[0], n), perMsg(c1[1]-c0[1], n))
	}
	m := n * rounds
	f := floorOf(s.directCPU, m, server, cl, m)
	fmt.Printf("HTTP alone (a bare net/http handler in a process of its own, each request held until released at the gateway's %.0f msg/s): server %s + load client %s per request; the gateway process − library: %s\n",
		rate, f.server.Round(100*time.Nanosecond), f.load.Round(100*time.Nanosecond), perMsg(s.gatewayCPU.self-s.directCPU.self, m))
	fmt.Printf("  throughput ratio bound by CPU, had the gateway added only that to the library's work: %.2f (measured %.2f)\n", f.bound, s.ratio)
	return nil
}

// listenerFile returns a copy of ln's file, to hand to a child.
func listenerFile(ln net.Listener) (*os.File, error) {
	if dl, ok := ln.(dirListener); ok {
		ln = dl.Listener
	}
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("a %T cannot be handed to a child", ln)
	}
	return fl.File()
}
