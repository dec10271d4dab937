package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP load runs in a child process (this program started again with
// -load-addr), so that its CPU time is measured apart from the gateway's.
// The parent writes a number of requests per line to its standard input;
// the child sends them from its workers and answers with one line of
// latencies in nanoseconds ("ok 123 456 ...") or "err <text>".

// loadClient is the parent's handle on the child.
type loadClient struct{ *child }

func startLoad(addr, client string, conc, depth int, keys bool, body []byte) (*loadClient, error) {
	if (depth != 1 || keys) && client != "epoll" {
		return nil, errors.New("-pipeline and -keys need -client epoll")
	}
	c, err := startChild("load client", nil, 1<<20,
		"-load-addr", addr, "-client", client, "-c", strconv.Itoa(conc), "-pipeline", strconv.Itoa(depth),
		"-keys="+strconv.FormatBool(keys), "-load-body", string(body))
	if err != nil {
		return nil, err
	}
	return &loadClient{c}, nil
}

// post has the child send n requests and returns their latencies.
func (l *loadClient) post(n int) ([]time.Duration, error) {
	f, err := l.ask(int64(n))
	if err != nil {
		return nil, err
	}
	if len(f) == 0 || f[0] != "ok" {
		return nil, fmt.Errorf("load client: %s", strings.Join(f, " "))
	}
	lats := make([]time.Duration, 0, len(f)-1)
	for _, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		lats = append(lats, time.Duration(v))
	}
	return lats, nil
}

// loadMain is the child: it keeps conc connections (or net/http's client
// with as many) and posts the pre-encoded body, one request in flight on
// each.
func loadMain(addr, client string, conc, depth int, keys bool, body []byte) error {
	var post func(w int) (int, []byte, error)
	var postN func(n int) ([]time.Duration, error)
	switch client {
	case "epoll":
		c, err := dialEpoll(addr, "/v1/messages", token, body, conc, depth)
		if err != nil {
			return err
		}
		defer c.close()
		if keys {
			c.useKeys()
		}
		postN = c.postAll
	case "raw":
		p, closeAll, err := rawPoster(addr, conc, body)
		if err != nil {
			return err
		}
		defer closeAll()
		post = p
	case "net/http":
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
		post = netHTTPPoster(hc, "http://"+addr+"/v1/messages", body)
	default:
		return fmt.Errorf("unknown -client %q", client)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	fmt.Fprintln(out, "ready")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			return err
		}
		var lats []time.Duration
		if postN != nil {
			lats, err = postN(n)
		} else {
			lats, err = postAll(post, n, conc)
		}
		if err != nil {
			fmt.Fprintf(out, "err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			out.WriteString("ok")
			for _, l := range lats {
				out.WriteByte(' ')
				out.WriteString(strconv.FormatInt(int64(l), 10))
			}
			out.WriteByte('\n')
		}
		out.Flush()
	}
	return in.Err()
}

// postAll posts n messages from conc workers and returns the latencies.
func postAll(post func(w int) (int, []byte, error), n, conc int) ([]time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	lats := make([][]time.Duration, conc)
	errc := make(chan error, conc)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				st, b, err := post(w)
				if err != nil {
					errc <- err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
				if st != http.StatusAccepted {
					errc <- fmt.Errorf("POST: %d %s", st, bytes.TrimSpace(b))
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, nil
}

// netHTTPPoster posts with net/http's client.
func netHTTPPoster(hc *http.Client, url string, body []byte) func(int) (int, []byte, error) {
	return func(int) (int, []byte, error) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, b, err
	}
}

// rawPoster posts on conc connections of its own, one per worker, opened
// before the first round.
func rawPoster(addr string, conc int, body []byte) (func(int) (int, []byte, error), func(), error) {
	conns := make([]*rawConn, conc)
	bufs := make([][]byte, conc)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	for i := range conns {
		c, err := dialRaw(addr, "/v1/messages", token, body)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns[i] = c
	}
	return func(w int) (int, []byte, error) {
		st, b, err := conns[w].post(bufs[w])
		bufs[w] = b
		return st, b, err
	}, closeAll, nil
}
