package main

import (
	"io"
	"net"
	"sync"
)

// relay forwards loopback connections to the server and counts the tags
// each direction carries, so that the <r/> a sender writes can be counted
// without touching the sender. It runs in the parent process: its CPU time
// is not the sender's.
type relay struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	up, down *tagCounter // client to server, server to client
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newRelay(target string) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, up: &tagCounter{}, down: &tagCounter{}}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is where senders connect.
func (r *relay) Addr() string { return r.ln.Addr().String() }

// reset starts new counters and returns them (for the next connection).
func (r *relay) reset() (up, down *tagCounter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up, r.down = &tagCounter{}, &tagCounter{}
	return r.up, r.down
}

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		up, down := r.up, r.down
		r.conns = append(r.conns, c, s)
		r.mu.Unlock()
		pipe := func(dst, src net.Conn, count *tagCounter) {
			io.Copy(dst, io.TeeReader(src, count))
			dst.(*net.TCPConn).CloseWrite()
		}
		r.wg.Go(func() { pipe(s, c, up) })
		r.wg.Go(func() { pipe(c, s, down) })
	}
}

// Close stops the relay and its connections.
func (r *relay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
