package main

import (
	"slices"
	"strconv"

	"github.com/xmpptrack/xmpptrack/internal/testkit/pgfloor"
)

// senderKind is a sender that -senders can name (besides xmpptrack-wN and
// xmpptrack-rN, which take their number from the name). senderKinds is
// the one list of them: the accounts, the child's role and its flags all
// come from it, so that a sender cannot be named and lack one of them.
type senderKind struct {
	name   string
	prefix string   // of its accounts (senderAccounts)
	role   string   // of its child; "" for aioxmpp, which runs a script
	flags  []string // of its child, its own
	// watch: the child reads the CPU of the server and the responder over
	// its workload (-watch), as every sender compared in the rounds does.
	watch bool
	extra bool // runs only when -senders names it
}

var senderKinds = []senderKind{
	{name: sXmpptrack, prefix: "xt", role: roleTracked, watch: true},
	{name: sPlain, prefix: "plain", role: rolePlain, watch: true},
	{name: sPlainSM, prefix: "plainsm", role: rolePlain, flags: []string{"-sm"}, watch: true},
	{name: sAioxmpp, prefix: "aio"},
	{name: sCeiling, prefix: "ceil", role: rolePlain},
	{name: sCeilingSM, prefix: "ceilsm", role: rolePlain, flags: []string{"-sm"}},
	{name: sPolled, prefix: "xtpoll", role: roleTracked, flags: []string{"-observe", observePoll}, watch: true, extra: true},
	{name: sNoCoalesce, prefix: "xtnonagle", role: roleTracked, flags: []string{"-nocoalesce"}, watch: true, extra: true},
	{name: sNoCarbons, prefix: "xtnocarb", role: roleTracked, flags: []string{"-nocarbons"}, watch: true, extra: true},
	{name: sOwnIDs, prefix: "xtid16", role: roleTracked, flags: []string{"-ownids"}, watch: true, extra: true},
	{name: sSQLite, prefix: "xtsql", role: roleTracked, flags: []string{"-store", storeSQLite}, watch: true, extra: true},
	{name: sSQLiteFloor, prefix: "xtsqlf", role: roleTracked, flags: []string{"-store", storeSQLiteFloor}, watch: true, extra: true},
	{name: sDiscard, prefix: "xtdisc", role: roleTracked, flags: []string{"-store", storeDiscard}, watch: true, extra: true},
	{name: sPostgres, prefix: "xtpg", role: roleTracked, flags: []string{"-store", storePostgres}, watch: true, extra: true},
	{name: sPostgres2, prefix: "xtpg2", role: roleTracked, flags: []string{"-store", storePostgres}, watch: true, extra: true},
	{name: sPgRows, prefix: "xtpgf", role: roleTracked, flags: []string{"-store", storePostgres + "-" + string(pgfloor.Rows)}, watch: true, extra: true},
	{name: sPgTrip, prefix: "xtpgt", role: roleTracked, flags: []string{"-store", storePostgres + "-" + string(pgfloor.Trip)}, watch: true, extra: true},
	{name: sPgNoSync, prefix: "xtpgns", role: roleTracked, flags: []string{"-store", storePostgresNoSync}, watch: true, extra: true},
}

// allSenders run by default, in this order; extraSenders may be named in
// -senders but do not run by default.
var allSenders, extraSenders = senderNames(false), senderNames(true)

func senderNames(extra bool) []string {
	var s []string
	for _, k := range senderKinds {
		if k.extra == extra {
			s = append(s, k.name)
		}
	}
	return slices.Clip(s)
}

// lookupSender returns the kind of a sender name, xmpptrack-wN and
// xmpptrack-rN included; ok is false for an unknown name.
func lookupSender(name string) (k senderKind, ok bool) {
	if w, windowed := windowSender(name); windowed {
		return senderKind{name: name, prefix: "xtw" + strconv.Itoa(w), role: roleTracked, watch: true}, true
	}
	if r, paced := pacedSender(name); paced {
		return senderKind{name: name, prefix: "xtr" + strconv.Itoa(int(r)), role: roleTracked, watch: true}, true
	}
	i := slices.IndexFunc(senderKinds, func(k senderKind) bool { return k.name == name })
	if i < 0 {
		return senderKind{}, false
	}
	return senderKinds[i], true
}

// senderFlags are the flags of a run's child for sender (instances: its
// accounts; watch: what watchArgs gives), before its accounts and its
// message count. Nil for aioxmpp and unknown names.
func (o *options) senderFlags(sender string, instances int, watch []string) []string {
	k, ok := lookupSender(sender)
	if !ok || k.role == "" {
		return nil
	}
	args := []string{"-role=" + k.role}
	if k.role == roleTracked {
		p, w := o.send, o.window
		if rate, paced := pacedSender(sender); paced {
			p.rate = rate
		}
		if ww, windowed := windowSender(sender); windowed {
			w = ww
		}
		args = append(args, "-instances", strconv.Itoa(instances))
		args = append(args, p.args()...)
		if w != 0 {
			args = append(args, "-window", strconv.Itoa(w))
		}
		if o.noCarbons {
			args = append(args, "-nocarbons")
		}
	}
	args = append(args, k.flags...)
	if k.watch {
		args = append(args, watch...)
	}
	return args
}
