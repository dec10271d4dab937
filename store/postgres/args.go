package postgres

import (
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const numStates = int(tracking.Error) + 1

// commitCall is the statement of a group commit: one round trip.
const commitCall = `SELECT keys, last FROM xmpptrack_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
	$14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36,
	$37, $38, $39, $40, $41, $42, $43)`

// args are the arguments of xmpptrack_commit (see the schema): columns of
// the new messages; the ids to lock (l), to which the other rows point by
// their position (1-based); the changes' evidence (c); the outcome (o) and
// the feed events (e) of a message's changes in the group for each state
// the message may be found in (from); its last sequence number (w); the
// sessions. Each creation event and change has a key, its rank in the
// feed: the function returns the keys of the feed rows it wrote, in cursor
// order.
type args struct {
	mID, mAccount, mResource, mRcpt, mThread, mChannel []string
	mRoom, mSettled                                    []bool
	mRaw                                               [][]byte
	mCreated                                           []time.Time
	mDeadline                                          []pgtype.Timestamptz // not Valid: none
	mState                                             []int16
	mKey                                               []int32

	lID []string

	cAt                       []time.Time
	cFrom, cSID, cCond, cText []string

	oPos     []int32
	oFrom    []int16
	oState   []int16
	oSettled []bool
	oAt      []time.Time

	ePos     []int32
	eFrom    []int16
	eKey     []int32
	eState   []int16
	eSettles []bool
	eChange  []int32

	wPos []int32
	wSeq []int64

	sAccount, sResource, sJID []string
	sSMID, sLocation          []string
	sMax, sIn, sOut, sAcked   []int64
	sUpdated                  []time.Time
}

func (a *args) list() []any {
	return []any{int32(numStates),
		a.mID, a.mAccount, a.mResource, a.mRcpt, a.mRoom, a.mThread, a.mChannel, a.mRaw, a.mCreated, a.mDeadline,
		a.mState, a.mSettled, a.mKey,
		a.lID,
		a.cAt, a.cFrom, a.cSID, a.cCond, a.cText,
		a.oPos, a.oFrom, a.oState, a.oSettled, a.oAt,
		a.ePos, a.eFrom, a.eKey, a.eState, a.eSettles, a.eChange,
		a.wPos, a.wSeq,
		a.sAccount, a.sResource, a.sJID, a.sSMID, a.sLocation, a.sMax, a.sIn, a.sOut, a.sAcked, a.sUpdated}
}

// build fills the arguments for the live batches of group and returns
// what each key stands for.
//
// The changes of a message are folded here, with store.Next, for each
// unsettled state the message may be found in: the function keeps the
// fold that starts from the state it finds under the row lock. A fold
// that changes nothing (every change a no-op from that state) sends no
// row; nor does a settled message, which no change moves.
func build(group []*groupcommit.Request, live []int, now time.Time) (*args, []result) {
	// Sized up front: a group commit may carry thousands of rows.
	var nm, nc, nw int
	for _, i := range live {
		b := group[i].Batch
		nm, nc, nw = nm+len(b.Messages), nc+len(b.Changes), nw+len(b.Written)
	}
	a := &args{
		mID: make([]string, 0, nm), mAccount: make([]string, 0, nm), mResource: make([]string, 0, nm),
		mRcpt: make([]string, 0, nm), mThread: make([]string, 0, nm), mChannel: make([]string, 0, nm),
		mRoom: make([]bool, 0, nm), mSettled: make([]bool, 0, nm), mRaw: make([][]byte, 0, nm),
		mCreated: make([]time.Time, 0, nm), mDeadline: make([]pgtype.Timestamptz, 0, nm),
		mState: make([]int16, 0, nm), mKey: make([]int32, 0, nm),
		lID: make([]string, 0, nc+nw),
		cAt: make([]time.Time, 0, nc), cFrom: make([]string, 0, nc), cSID: make([]string, 0, nc),
		cCond: make([]string, 0, nc), cText: make([]string, 0, nc),
		oPos: make([]int32, 0, nc), oFrom: make([]int16, 0, nc), oState: make([]int16, 0, nc),
		oSettled: make([]bool, 0, nc), oAt: make([]time.Time, 0, nc),
		ePos: make([]int32, 0, nc), eFrom: make([]int16, 0, nc), eKey: make([]int32, 0, nc),
		eState: make([]int16, 0, nc), eSettles: make([]bool, 0, nc), eChange: make([]int32, 0, nc),
		wPos: make([]int32, 0, nw), wSeq: make([]int64, 0, nw),
	}
	keys := make([]result, 0, nm+nc)
	key := func(r result) int32 {
		keys = append(keys, r)
		return int32(len(keys) - 1)
	}
	for _, i := range live {
		b := group[i].Batch
		for j := range b.Messages {
			m := &b.Messages[j]
			if m.Created.IsZero() {
				m.Created = now
			}
			st := store.SettledState(m.State)
			raw := m.Raw
			if st {
				raw = nil
			}
			dl := pgtype.Timestamptz{Time: m.Deadline, Valid: !m.Deadline.IsZero()}
			a.mID = append(a.mID, m.ID)
			a.mAccount = append(a.mAccount, m.Owner.Account)
			a.mResource = append(a.mResource, m.Owner.Resource)
			a.mRcpt = append(a.mRcpt, m.To)
			a.mRoom = append(a.mRoom, m.Room)
			a.mThread = append(a.mThread, m.Thread)
			a.mChannel = append(a.mChannel, m.Channel)
			a.mRaw = append(a.mRaw, raw)
			a.mCreated = append(a.mCreated, m.Created)
			a.mDeadline = append(a.mDeadline, dl)
			a.mState = append(a.mState, int16(m.State))
			a.mSettled = append(a.mSettled, st)
			a.mKey = append(a.mKey, key(result{batch: i, msg: j, change: -1}))
		}
		for j := range b.Changes {
			a.lID = append(a.lID, b.Changes[j].ID)
		}
		for _, w := range b.Written {
			a.lID = append(a.lID, w.ID)
		}
	}
	slices.Sort(a.lID)
	a.lID = slices.Compact(a.lID)
	pos := func(id string) int {
		k, _ := slices.BinarySearch(a.lID, id)
		return k
	}
	// The changes of each message in group order, and its last sequence
	// number.
	of := make([][]change, len(a.lID))
	seq := make([]int64, len(a.lID))
	for k := range seq {
		seq[k] = -1
	}
	// Sessions: the last one of each owner.
	last := map[store.Instance]int{}
	var sess []store.Session
	for _, i := range live {
		b := group[i].Batch
		for j := range b.Changes {
			c := &b.Changes[j]
			if c.At.IsZero() {
				c.At = now
			}
			p := pos(c.ID)
			of[p] = append(of[p], change{c: int32(len(a.cAt) + 1), key: key(result{batch: i, change: j}), req: c.State})
			a.cAt = append(a.cAt, c.At)
			a.cFrom = append(a.cFrom, c.From)
			a.cSID = append(a.cSID, c.StanzaID)
			a.cCond = append(a.cCond, c.Condition)
			a.cText = append(a.cText, c.Text)
		}
		for _, w := range b.Written {
			seq[pos(w.ID)] = int64(w.Seq)
		}
		for _, ss := range b.Sessions {
			if k, ok := last[ss.Owner]; ok {
				sess[k] = ss
			} else {
				last[ss.Owner] = len(sess)
				sess = append(sess, ss)
			}
		}
	}
	for p, cs := range of {
		for from := range tracking.MessageState(numStates) {
			a.fold(int32(p+1), from, cs)
		}
		if seq[p] >= 0 {
			a.wPos = append(a.wPos, int32(p+1))
			a.wSeq = append(a.wSeq, seq[p])
		}
	}
	for _, ss := range sess {
		if ss.Updated.IsZero() {
			ss.Updated = now
		}
		a.sAccount = append(a.sAccount, ss.Owner.Account)
		a.sResource = append(a.sResource, ss.Owner.Resource)
		a.sJID = append(a.sJID, ss.JID)
		a.sSMID = append(a.sSMID, ss.ID)
		a.sLocation = append(a.sLocation, ss.Location)
		a.sMax = append(a.sMax, int64(ss.Max/time.Second))
		a.sIn = append(a.sIn, int64(ss.Inbound))
		a.sOut = append(a.sOut, int64(ss.Outbound))
		a.sAcked = append(a.sAcked, int64(ss.Acked))
		a.sUpdated = append(a.sUpdated, ss.Updated)
	}
	return a, keys
}

// change is a change of the group: its position in the c arrays
// (1-based), its key and the state it asks for.
type change struct {
	c, key int32
	req    tracking.MessageState
}

// fold applies the changes cs, in order, to the message at position p
// found unsettled in state from, and appends the outcome and the events,
// if any.
func (a *args) fold(p int32, from tracking.MessageState, cs []change) {
	cur, settled, dirty := from, false, false
	var at time.Time
	for _, c := range cs {
		if settled {
			break
		}
		to, settles, changed := store.Next(cur, false, c.req)
		if !changed {
			continue
		}
		if to != cur {
			a.ePos = append(a.ePos, p)
			a.eFrom = append(a.eFrom, int16(from))
			a.eKey = append(a.eKey, c.key)
			a.eState = append(a.eState, int16(to))
			a.eSettles = append(a.eSettles, settles)
			a.eChange = append(a.eChange, c.c)
		}
		cur, settled, dirty, at = to, settles, true, a.cAt[c.c-1]
	}
	if dirty {
		a.oPos = append(a.oPos, p)
		a.oFrom = append(a.oFrom, int16(from))
		a.oState = append(a.oState, int16(cur))
		a.oSettled = append(a.oSettled, settled)
		a.oAt = append(a.oAt, at)
	}
}
