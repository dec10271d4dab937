package login

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
)

// target is an address to try for a domain without Config.Addr.
type target struct {
	addr string // host:port
	tls  bool   // direct TLS (xmpps-client); else STARTTLS (xmpp-client)
}

// targets returns the addresses to try for domain, in order, as
// mellium.im/xmpp/dial orders them: with directTLS the xmpps-client SRV
// records (XEP-0368), then the xmpp-client ones (RFC 6120), each as the
// resolver sorts them (priority, then weight); then, for a service without
// records, its standard port on the domain itself (5222, then 5223 with
// directTLS). A service whose only record's target is "." is decidedly not
// offered (RFC 2782); where that is xmpps-client, the domain's own
// addresses are not tried either (XEP-0368: no A/AAAA fallback). A failed
// lookup counts as no records, but the valid records that came with an
// error (the resolver drops those with invalid names) are used; only when
// both failed with directTLS is it an error. The two lookups run at once.
//
// The client dials these itself, rather than through mellium's dialer, so
// that a direct TLS connection runs over its own probeConn (see dialConn).
func targets(ctx context.Context, r *net.Resolver, domain string, directTLS bool) ([]target, error) {
	type service struct {
		name      string
		port      int
		tls       bool
		srvs      []*net.SRV
		withdrawn bool
	}
	services := []*service{{name: "xmpp-client", port: 5222}}
	if directTLS {
		services = append(services, &service{name: "xmpps-client", port: 5223, tls: true})
	}
	lookupErrs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, s := range services {
		wg.Go(func() { _, s.srvs, lookupErrs[i] = r.LookupSRV(ctx, s.name, "tcp", domain) })
	}
	wg.Wait()
	var errs []error
	for i, s := range services {
		var dnsErr *net.DNSError
		switch err := lookupErrs[i]; {
		case err != nil && len(s.srvs) == 0:
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				errs = append(errs, err)
			}
		case len(s.srvs) == 1 && s.srvs[0].Target == ".":
			s.srvs, s.withdrawn = nil, true
		}
	}
	if len(errs) == 2 {
		return nil, errors.Join(errs...)
	}
	var all, fallback []target
	noFallback := directTLS && services[1].withdrawn
	for _, s := range slices.Backward(services) { // xmpps-client first
		for _, srv := range s.srvs {
			all = append(all, target{net.JoinHostPort(srv.Target, strconv.Itoa(int(srv.Port))), s.tls})
		}
	}
	for _, s := range services {
		if len(s.srvs) == 0 && !s.withdrawn && !noFallback {
			fallback = append(fallback, target{net.JoinHostPort(domain, strconv.Itoa(s.port)), s.tls})
		}
	}
	all = append(all, fallback...)
	if len(all) == 0 {
		return nil, fmt.Errorf("no xmpp service found at address %s", domain)
	}
	return all, nil
}
