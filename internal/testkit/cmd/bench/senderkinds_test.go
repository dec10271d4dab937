package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/smhook"
)

// TestSenderFlags: every sender that can be named has a child (but
// aioxmpp), every sender compared in the rounds reads the server's CPU
// over its workload (-watch), and each variant's child gets what makes
// it one.
func TestSenderFlags(t *testing.T) {
	o, err := parseOptions([]string{"-n", "10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(passwordEnv, "pw")
	// -nocoalesce sets smhook.NoCoalesce in the process that parses it.
	t.Cleanup(func() { smhook.NoCoalesce.Store(false) })
	names := append([]string{oWindowPrefix + "64", pacedPrefix + "3000"}, append(slices.Clone(allSenders), extraSenders...)...)
	for _, s := range names {
		flags := o.senderFlags(s, 1, []string{"-watch", "11,22"})
		if s == sAioxmpp {
			if flags != nil {
				t.Errorf("%s: child flags %q, want none (it runs a script)", s, flags)
			}
			continue
		}
		a, err := parseChildArgs(append(flags, "-jid", "a@localhost"))
		if err != nil {
			t.Errorf("%s: child flags %q: %v", s, flags, err)
			continue
		}
		ceiling := s == sCeiling || s == sCeilingSM
		wantRole := roleTracked
		if ceiling || s == sPlain || s == sPlainSM {
			wantRole = rolePlain
		}
		if a.role != wantRole {
			t.Errorf("%s: role %q, want %q", s, a.role, wantRole)
		}
		if !ceiling && !slices.Equal(a.watch, []int{11, 22}) {
			t.Errorf("%s: watches %v, want the server and the responder (flags %q)", s, a.watch, flags)
		}
		if got, want := a.sm, s == sPlainSM || s == sCeilingSM; got != want {
			t.Errorf("%s: stream management %v, want %v", s, got, want)
		}
		if got, want := a.sendPattern(1).ownIDs, s == sOwnIDs; got != want {
			t.Errorf("%s: own ids %v, want %v", s, got, want)
		}
		if got, want := a.noCarbons, s == sNoCarbons; got != want {
			t.Errorf("%s: no carbons %v, want %v", s, got, want)
		}
		if got, want := a.observe == observePoll, s == sPolled; got != want {
			t.Errorf("%s: polled %v, want %v", s, got, want)
		}
		if got, want := smhook.NoCoalesce.Swap(false), s == sNoCoalesce; got != want {
			t.Errorf("%s: no coalescing %v, want %v", s, got, want)
		}
		wantStore := map[string]string{sSQLite: storeSQLite, sSQLiteFloor: storeSQLiteFloor, sDiscard: storeDiscard,
			sPostgres: storePostgres, sPostgres2: storePostgres, sPgRows: "postgres-rows", sPgTrip: "postgres-trip", sPgNoSync: storePostgresNoSync}[s]
		if a.store != wantStore {
			t.Errorf("%s: store %q, want %q", s, a.store, wantStore)
		}
	}
	a, err := parseChildArgs(append(o.senderFlags(oWindowPrefix+"64", 1, nil), "-jid", "a@localhost"))
	if err != nil || a.window != 64 {
		t.Errorf("%s64: window %d, %v", oWindowPrefix, a.window, err)
	}
	a, err = parseChildArgs(append(o.senderFlags(pacedPrefix+"3000", 1, nil), "-jid", "a@localhost"))
	if err != nil || a.rate != 3000 {
		t.Errorf("%s3000: rate %v, %v", pacedPrefix, a.rate, err)
	}
	if f := o.senderFlags("nobody", 1, nil); f != nil {
		t.Errorf("unknown sender: flags %q", f)
	}
}

// TestSendPatternMessage: with ownIDs every message has an id of 16
// characters of its own; without, the registry makes it.
func TestSendPatternMessage(t *testing.T) {
	to := jid.MustParse("r@localhost")
	p := sendPattern{ownIDs: true}
	m1, m2 := p.message(to, 1), p.message(to, 2)
	if len(m1.ID) != 16 || m1.ID == m2.ID {
		t.Errorf("own ids %q and %q, want two of 16 characters", m1.ID, m2.ID)
	}
	if m := (sendPattern{}).message(to, 1); m.ID != "" {
		t.Errorf("id %q without ownIDs", m.ID)
	}
}

// TestReportRoundsWorkload: the per-round report gives the server's CPU
// over the workload alone, xmpptrack / plain, when both runs read it.
func TestReportRoundsWorkload(t *testing.T) {
	mk := func(server float64) run {
		return run{res: result{N: 1000, CntRecip: 1000, LastRecip: 1, CPU: 0.1, WatchCPU: []float64{server, 0.05}}, serverCPU: 2 * server}
	}
	runs := map[string][]run{
		sXmpptrack: {mk(0.22), mk(0.26), mk(0.30)},
		sPlain:     {mk(0.20), mk(0.20), mk(0.20)},
	}
	b := &bench{servers: []*serverResults{{kind: "ejabberd", runs: runs}}}
	var out bytes.Buffer
	b.reportRounds(&out)
	if want := "server CPU during the workload alone (log-in and log-out left out), ratio 1.10 1.30 1.50 (median 1.30)"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
	for i := range runs[sPlain] {
		runs[sPlain][i].res.WatchCPU = nil
	}
	out.Reset()
	b.reportRounds(&out)
	if strings.Contains(out.String(), "workload alone") || !strings.Contains(out.String(), "ejabberd: throughput") {
		t.Errorf("without plain's workload CPU, want the round line without its ratio:\n%s", out.String())
	}
}
