//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"
)

// defaultClient is -client's default.
const defaultClient = "epoll"

// epollClient is the load client of -client epoll: conc keep-alive
// connections served by one loop on one epoll set, the way wrk sends, with
// one request in flight per connection. Per request it costs one write and
// one read system call and its share of an epoll_wait; the raw client's
// goroutine per connection costs a failed read, a park and a wake-up more,
// which on a machine whose cores the gateway shares would be taken from it.
type epollClient struct {
	ep    int
	conns []*epollConn
	byFD  map[int32]*epollConn
}

type epollConn struct {
	fd   int
	req  []byte
	buf  []byte // what was read of the response so far
	sent time.Time
}

func dialEpoll(addr, path, token string, body []byte, conc int) (*epollClient, error) {
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	c := &epollClient{ep: ep, byFD: make(map[int32]*epollConn, conc)}
	sa := &syscall.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, addr, token, len(body), body)
	for range conc {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			c.close()
			return nil, err
		}
		ec := &epollConn{fd: fd, req: req, buf: make([]byte, 0, 4096)}
		c.conns = append(c.conns, ec)
		c.byFD[int32(fd)] = ec
		// Connected blocking, then non-blocking; no delay, as net.Dial
		// sets.
		if err := syscall.Connect(fd, sa); err != nil {
			c.close()
			return nil, err
		}
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
			c.close()
			return nil, err
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

// send writes a connection's request.
func (ec *epollConn) send() error {
	ec.sent = time.Now()
	for off := 0; off < len(ec.req); {
		n, err := syscall.Write(ec.fd, ec.req[off:])
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

// postAll sends n requests, at most one in flight per connection, and
// returns their latencies.
func (c *epollClient) postAll(n int) ([]time.Duration, error) {
	lats := make([]time.Duration, 0, n)
	started := 0
	for _, ec := range c.conns {
		if started == n {
			break
		}
		if err := ec.send(); err != nil {
			return nil, err
		}
		started++
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
			done, err := ec.read()
			if err != nil {
				return nil, err
			}
			if !done {
				continue
			}
			lats = append(lats, time.Since(ec.sent))
			if started < n {
				if err := ec.send(); err != nil {
					return nil, err
				}
				started++
			}
		}
	}
	return lats, nil
}

// read reads what is there of the response; done reports a whole one read
// (and accepted: any other status is an error).
func (ec *epollConn) read() (done bool, _ error) {
	for {
		if len(ec.buf) == cap(ec.buf) {
			return false, errors.New("response over 4 KiB")
		}
		m, err := syscall.Read(ec.fd, ec.buf[len(ec.buf):cap(ec.buf)])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		if m == 0 {
			return false, errors.New("connection closed by the gateway")
		}
		ec.buf = ec.buf[:len(ec.buf)+m]
		break
	}
	status, size, ok, err := parseResponse(ec.buf)
	if err != nil || !ok {
		return false, err
	}
	if size != len(ec.buf) {
		return false, fmt.Errorf("%d bytes after a response of %d", len(ec.buf)-size, size)
	}
	if status != 202 {
		return false, fmt.Errorf("POST: %d %s", status, bytes.TrimSpace(ec.buf))
	}
	ec.buf = ec.buf[:0]
	return true, nil
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
