package login

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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
// offered (RFC 2782). A failed lookup counts as no records; only when both
// failed with directTLS is it an error.
//
// The client dials these itself, rather than through mellium's dialer, so
// that a direct TLS connection runs over its own probeConn (see dialConn).
func targets(ctx context.Context, r *net.Resolver, domain string, directTLS bool) ([]target, error) {
	services := []string{"xmpp-client"}
	if directTLS {
		services = append(services, "xmpps-client")
	}
	var found [2][]target
	var fallback []target
	var errs []error
	for i, service := range services {
		tls, port := service == "xmpps-client", 5222+i
		_, srvs, err := r.LookupSRV(ctx, service, "tcp", domain)
		var dnsErr *net.DNSError
		if err != nil {
			srvs = nil // as mellium: what came with an error is not used
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				errs = append(errs, err)
			}
		}
		switch {
		case len(srvs) == 1 && srvs[0].Target == ".":
			continue // decidedly not offered
		case len(srvs) == 0:
			fallback = append(fallback, target{net.JoinHostPort(domain, strconv.Itoa(port)), tls})
		}
		for _, s := range srvs {
			found[i] = append(found[i], target{net.JoinHostPort(s.Target, strconv.Itoa(int(s.Port))), tls})
		}
	}
	if len(errs) == 2 {
		return nil, errors.Join(errs...)
	}
	all := append(append(found[1], found[0]...), fallback...)
	if len(all) == 0 {
		return nil, fmt.Errorf("no xmpp service found at address %s", domain)
	}
	return all, nil
}
