package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/pgfloor"
)

func TestSendPatternFlags(t *testing.T) {
	o, err := parseOptions([]string{"-send-goroutines", "32", "-send-rate", "1000", "-senders", "xmpptrack,xmpptrack-postgres-x2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.send.goroutines != 32 || o.send.rate != 1000 {
		t.Errorf("pattern %+v, want 32 goroutines at 1000/s", o.send)
	}
	if got, want := o.send.args(), []string{"-goroutines", "32", "-rate", "1000"}; !slices.Equal(got, want) {
		t.Errorf("child args %q, want %q", got, want)
	}
	for _, bad := range [][]string{{"-send-goroutines", "0"}, {"-send-rate", "-1"}} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	t.Setenv(passwordEnv, "pw")
	a, err := parseChildArgs([]string{"-role=xmpptrack", "-jid", "a@localhost", "-goroutines", "8", "-rate", "500", "-instances", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if a.goroutines != 8 || a.rate != 500 || a.instances != 2 {
		t.Errorf("child got %d goroutines, rate %v, %d instances", a.goroutines, a.rate, a.instances)
	}
}

func TestSenderAccountsTwoInstances(t *testing.T) {
	if got := senderAccounts(sPostgres2, "1", 4); len(got) != 2 || got[0] == got[1] {
		t.Errorf("accounts %q, want two distinct", got)
	}
	if got := senderAccounts(sPostgres, "1", 4); len(got) != 1 {
		t.Errorf("accounts %q, want one", got)
	}
}

// TestPostgresFloors: every PostgreSQL sender has accounts of its own, and
// its -store value names the real store or the floor it runs on.
func TestPostgresFloors(t *testing.T) {
	prefixes := map[string]string{}
	for _, s := range []string{sPostgres, sPostgres2, sPgRows, sPgTrip, sPgNoSync} {
		p := senderAccounts(s, "1", 1)[0]
		if other, dup := prefixes[p]; dup {
			t.Errorf("%s and %s share account %q", s, other, p)
		}
		prefixes[p] = s
	}
	for v, want := range map[string]pgfloor.Kind{"postgres": "", "postgres-nosync": "", "postgres-rows": pgfloor.Rows, "postgres-trip": pgfloor.Trip} {
		if k, ok := postgresStore(v); !ok || k != want {
			t.Errorf("postgresStore(%q) = %q, %v; want %q", v, k, ok, want)
		}
	}
	if _, ok := postgresStore(storeSQLite); ok {
		t.Errorf("postgresStore(%q): on PostgreSQL", storeSQLite)
	}
}

func TestFillLatency(t *testing.T) {
	var l []time.Duration
	for i := 100; i >= 1; i-- { // unsorted
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	var r result
	fillLatency(&r, l)
	if r.SendP50 != 0.051 || r.SendP99 != 0.1 || r.SendMax != 0.1 {
		t.Errorf("p50 %v p99 %v max %v, want 0.051 0.1 0.1", r.SendP50, r.SendP99, r.SendMax)
	}
	var none result
	fillLatency(&none, nil)
	if none.SendP50 != 0 {
		t.Error("latency without samples")
	}
}

// TestInstancesPattern: each of two instances sends from as many
// goroutines as one instance does.
func TestInstancesPattern(t *testing.T) {
	if p := instancesPattern(32, 2, 0); p.goroutines != 64 {
		t.Errorf("two instances of 32 goroutines: %d goroutines", p.goroutines)
	}
	if p := instancesPattern(32, 1, 500); p.goroutines != 32 || p.rate != 500 {
		t.Errorf("one instance: %+v", p)
	}
	if p := instancesPattern(1, 0, 0); p.goroutines != 1 {
		t.Errorf("no instance count: %+v", p)
	}
}

// TestSenderAccountsDistinct: every sender that can be named has accounts
// of its own, so that two senders of one round never share an account.
func TestSenderAccountsDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, s := range append(append([]string{oWindowPrefix + "64", pacedPrefix + "3000"}, allSenders...), extraSenders...) {
		a := senderAccounts(s, "1", 1)[0]
		if strings.HasPrefix(a, "-") {
			t.Errorf("%s: account %q has no prefix of its own", s, a)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share account %q", s, other, a)
		}
		seen[a] = s
	}
}
