package login

import (
	"net"
	"slices"
	"testing"
)

// TestTargets: the order in which a domain's addresses are tried without
// Addr: direct TLS records first (with DirectTLS), then STARTTLS records,
// each in priority order, then the standard port of a service without
// records; a "." record withdraws its service.
func TestTargets(t *testing.T) {
	srv := func(target string, port, priority uint16) net.SRV {
		return net.SRV{Target: target, Port: port, Priority: priority}
	}
	for _, tc := range []struct {
		name      string
		records   map[string][]net.SRV
		directTLS bool
		want      []target
	}{
		{"no records", nil, false, []target{{"example.net:5222", false}}},
		{"no records, direct TLS", nil, true, []target{{"example.net:5222", false}, {"example.net:5223", true}}},
		{"both services", map[string][]net.SRV{
			"_xmpp-client._tcp.example.net.":  {srv("b.example.net.", 15222, 20), srv("a.example.net.", 5222, 10)},
			"_xmpps-client._tcp.example.net.": {srv("c.example.net.", 443, 0)},
		}, true, []target{{"c.example.net.:443", true}, {"a.example.net.:5222", false}, {"b.example.net.:15222", false}}},
		{"direct TLS records unused without DirectTLS", map[string][]net.SRV{
			"_xmpps-client._tcp.example.net.": {srv("c.example.net.", 443, 0)},
		}, false, []target{{"example.net:5222", false}}},
		{"STARTTLS withdrawn", map[string][]net.SRV{
			"_xmpp-client._tcp.example.net.":  {srv(".", 0, 0)},
			"_xmpps-client._tcp.example.net.": {srv("c.example.net.", 443, 0)},
		}, true, []target{{"c.example.net.:443", true}}},
		{"direct TLS withdrawn", map[string][]net.SRV{
			"_xmpps-client._tcp.example.net.": {srv(".", 0, 0)},
		}, true, []target{{"example.net:5222", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := targets(t.Context(), fakeDNS{srv: tc.records}.resolver(), "example.net", tc.directTLS)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("targets: %v, %v, want %v", got, err, tc.want)
			}
		})
	}
	withdrawn := map[string][]net.SRV{"_xmpp-client._tcp.example.net.": {srv(".", 0, 0)}}
	if got, err := targets(t.Context(), fakeDNS{srv: withdrawn}.resolver(), "example.net", false); err == nil {
		t.Errorf("targets with the only service withdrawn: %v, want an error", got)
	}
}
