package login

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is a resolver whose DNS server is this map: SRV records by
// service name, and an IPv4 address by host name (such a host has no
// IPv6 address). A query for a name that starts with one in fail gets a
// server failure (SERVFAIL); every other name does not exist. Names end
// with a dot.
type fakeDNS struct {
	srv  map[string][]net.SRV
	host map[string][4]byte
	fail []string
	// together, if set, holds every SRV answer until queries for two
	// different names have come (lookups made one after the other then
	// get no answer).
	together *barrier
}

// barrier is released by the second distinct name it sees.
type barrier struct {
	mu    sync.Mutex
	names map[string]bool
	all   chan struct{}
}

func newBarrier() *barrier { return &barrier{names: map[string]bool{}, all: make(chan struct{})} }

func (b *barrier) wait(name string) {
	b.mu.Lock()
	if b.names[name] = true; len(b.names) == 2 {
		close(b.all)
	}
	b.mu.Unlock()
	<-b.all
}

// resolver returns a Go resolver that asks d. Its connections are pipes,
// so it frames each message with a 2-byte length, as over TCP.
func (d fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			for {
				var n [2]byte
				if _, err := io.ReadFull(server, n[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(n[:]))
				if _, err := io.ReadFull(server, q); err != nil {
					return
				}
				a, err := d.answer(q)
				if err != nil {
					return
				}
				if _, err := server.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...)); err != nil {
					return
				}
			}
		}()
		return client, nil
	}}
}

// answer builds the response to a query.
func (d fakeDNS) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	name := q.Name.String()
	if d.together != nil && q.Type == dnsmessage.TypeSRV {
		d.together.wait(name)
	}
	srvs, isService := d.srv[name]
	ip, isHost := d.host[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	switch {
	case slices.ContainsFunc(d.fail, func(f string) bool { return strings.HasPrefix(name, f) }):
		rh.RCode = dnsmessage.RCodeServerFailure
	case !isService && !isHost:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch {
	case q.Type == dnsmessage.TypeSRV:
		for _, s := range srvs {
			target, err := dnsmessage.NewName(s.Target)
			if err != nil {
				return nil, err
			}
			if err := b.SRVResource(rr, dnsmessage.SRVResource{Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: target}); err != nil {
				return nil, err
			}
		}
	case q.Type == dnsmessage.TypeA && isHost:
		if err := b.AResource(rr, dnsmessage.AResource{A: ip}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
