//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultClient is -client's default.
const defaultClient = "epoll"

// epollClient is the load client of -client epoll: keep-alive connections
// served by one loop on one epoll set, the way wrk sends. Each connection
// has up to depth requests in flight: with depth 1 (the default) a request
// is sent once the answer to the one before arrived; with more, the
// connection pipelines them as HTTP/1.1 allows (RFC 9112, section 9.3.2:
// the requests are written back to back, the answers come in their order),
// those it can send written together in one system call. Per request it
// costs at most one write and one read system call and its share of an
// epoll_wait; the raw client's goroutine per connection costs a failed
// read, a park and a wake-up more, which on a machine whose cores the
// gateway shares would be taken from it.
type epollClient struct {
	ep    int
	depth int
	conns []*epollConn
	byFD  map[int32]*epollConn
}

type epollConn struct {
	fd   int
	req  []byte      // one request
	out  []byte      // the requests written in one system call
	buf  []byte      // what was read of the answers so far
	sent []time.Time // when each request in flight was sent, oldest first
	// keys, with -keys, counts the Idempotency-Keys given so far; the
	// key's digits are at keyAt in req.
	keys  *uint64
	keyAt int
}

// keyHeader is the Idempotency-Key of -keys: a number of fixed width,
// counted over the client's life, so that every request of a bench run has
// a key of its own (each run has a store of its own).
const keyHeader = "Idempotency-Key: bench-0000000000000000\r\n"

// useKeys gives every request from now on an Idempotency-Key of its own.
func (c *epollClient) useKeys() {
	var n uint64
	for _, ec := range c.conns {
		i := bytes.Index(ec.req, []byte("\r\n\r\n")) + 2
		ec.req = append(append(append([]byte(nil), ec.req[:i]...), keyHeader...), ec.req[i:]...)
		ec.keyAt = i + len(keyHeader) - len("0000000000000000\r\n")
		ec.keys = &n
	}
}

// dialEpoll opens conc/depth connections (conc a multiple of depth), each
// to carry depth requests at a time.
func dialEpoll(addr, path, token string, body []byte, conc, depth int) (*epollClient, error) {
	if depth < 1 || conc%depth != 0 {
		return nil, fmt.Errorf("%d requests in flight do not make whole connections of %d", conc, depth)
	}
	// addr is host:port on TCP, or a Unix socket's path (starting with
	// "/"), whose requests name localhost as their host.
	var sa syscall.Sockaddr
	family, host := syscall.AF_INET, addr
	if strings.HasPrefix(addr, "/") {
		family, host = syscall.AF_UNIX, "localhost"
		sa = &syscall.SockaddrUnix{Name: addr}
	} else {
		ap, err := net.ResolveTCPAddr("tcp4", addr)
		if err != nil {
			return nil, err
		}
		in4 := &syscall.SockaddrInet4{Port: ap.Port}
		copy(in4.Addr[:], ap.IP.To4())
		sa = in4
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	c := &epollClient{ep: ep, depth: depth, byFD: make(map[int32]*epollConn, conc/depth)}
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, host, token, len(body), body)
	for range conc / depth {
		fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			c.close()
			return nil, err
		}
		ec := &epollConn{fd: fd, req: req, buf: make([]byte, 0, 4096*depth),
			out: make([]byte, 0, len(req)*depth), sent: make([]time.Time, 0, depth)}
		c.conns = append(c.conns, ec)
		c.byFD[int32(fd)] = ec
		// Connected blocking, then non-blocking; no delay, as net.Dial
		// sets.
		if err := syscall.Connect(fd, sa); err != nil {
			c.close()
			return nil, err
		}
		if family == syscall.AF_INET {
			if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
				c.close()
				return nil, err
			}
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			c.close()
			return nil, err
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *epollClient) close() {
	for _, ec := range c.conns {
		syscall.Close(ec.fd)
	}
	syscall.Close(c.ep)
}

// send writes k more requests on the connection, back to back in one
// write (the socket's buffer takes them: at most depth requests of a few
// hundred bytes).
func (ec *epollConn) send(k int) error {
	ec.out = ec.out[:0]
	now := time.Now()
	for range k {
		start := len(ec.out)
		ec.out = append(ec.out, ec.req...)
		if ec.keys != nil {
			*ec.keys++
			digits := ec.out[start+ec.keyAt : start+ec.keyAt+16]
			for i, v := len(digits)-1, *ec.keys; i >= 0; i, v = i-1, v/10 {
				digits[i] = byte('0' + v%10)
			}
		}
		ec.sent = append(ec.sent, now)
	}
	for off := 0; off < len(ec.out); {
		n, err := syscall.Write(ec.fd, ec.out[off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off += n
	}
	return nil
}

// postAll sends n requests, at most depth in flight per connection, and
// returns their latencies.
func (c *epollClient) postAll(n int) ([]time.Duration, error) {
	lats := make([]time.Duration, 0, n)
	started := 0
	for _, ec := range c.conns {
		k := min(c.depth, n-started)
		if k == 0 {
			break
		}
		if err := ec.send(k); err != nil {
			return nil, err
		}
		started += k
	}
	events := make([]syscall.EpollEvent, len(c.conns))
	for len(lats) < n {
		k, err := syscall.EpollWait(c.ep, events, 10_000)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("epoll_wait: %w", err)
		}
		if k == 0 {
			return nil, fmt.Errorf("no response for 10 s (%d of %d done)", len(lats), n)
		}
		for _, ev := range events[:k] {
			ec := c.byFD[ev.Fd]
			if lats, err = ec.read(lats); err != nil {
				return nil, err
			}
			if m := min(c.depth-len(ec.sent), n-started); m > 0 {
				if err := ec.send(m); err != nil {
					return nil, err
				}
				started += m
			}
		}
	}
	return lats, nil
}

// read reads what is there of the answers and appends the latency of each
// whole one to lats (each must be 202 Accepted: any other status is an
// error, and so is an answer to no request).
func (ec *epollConn) read(lats []time.Duration) ([]time.Duration, error) {
	for {
		if len(ec.buf) == cap(ec.buf) {
			return lats, fmt.Errorf("answers over %d bytes", cap(ec.buf))
		}
		m, err := syscall.Read(ec.fd, ec.buf[len(ec.buf):cap(ec.buf)])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return lats, nil
		}
		if err != nil {
			return lats, fmt.Errorf("read: %w", err)
		}
		if m == 0 {
			return lats, errors.New("connection closed by the gateway")
		}
		ec.buf = ec.buf[:len(ec.buf)+m]
		break
	}
	now := time.Now()
	b := ec.buf
	for len(b) > 0 {
		status, size, ok, err := parseResponse(b)
		if err != nil {
			return lats, err
		}
		if !ok {
			break
		}
		if status != 202 {
			return lats, fmt.Errorf("POST: %d %s", status, bytes.TrimSpace(b[:size]))
		}
		if len(ec.sent) == 0 {
			return lats, fmt.Errorf("%d bytes after the last answer awaited", len(b))
		}
		lats = append(lats, now.Sub(ec.sent[0]))
		ec.sent = append(ec.sent[:0], ec.sent[1:]...)
		b = b[size:]
	}
	ec.buf = ec.buf[:copy(ec.buf, b)]
	return lats, nil
}

// parseResponse reads the status and the length of the response at the
// start of b; ok is false while b does not hold all of it.
func parseResponse(b []byte) (status, size int, ok bool, _ error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, 0, false, nil
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, 0, false, errors.New("response without Content-Length")
	}
	size = end + 4 + length
	return status, size, len(b) >= size, nil
}
