package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The arguments of xmpptrack_commit are encoded here, in PostgreSQL's
// binary format, into one buffer that the committer reuses from one group
// commit to the next, and sent with the prepared statement (pgconn's
// ExecStatement). pgx's own encoding of the same arrays went through a
// plan per argument and per element, and grew fresh buffers for every
// call (it shrinks them after each): in the bench that was about a sixth
// of everything the sender allocated.

// Type oids of the array elements (pg_type).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidTimestamptz = 1184
)

// params is the binary encoding of a statement's parameters.
type params struct {
	buf   []byte
	start []int    // where each parameter starts in buf
	oids  []uint32 // the type of each parameter
	vals  [][]byte // the parameters, slices of buf
}

func (p *params) reset() {
	p.buf, p.start, p.oids = p.buf[:0], p.start[:0], p.oids[:0]
}

// arrayOf is the array type of each element type.
var arrayOf = map[uint32]uint32{oidBool: 1000, oidBytea: 1001, oidInt8: 1016, oidInt2: 1005, oidInt4: 1007,
	oidText: 1009, oidTimestamptz: 1185}

// values returns the parameters encoded since reset.
func (p *params) values() [][]byte {
	clear(p.vals)
	p.vals = p.vals[:0]
	for i, s := range p.start {
		end := len(p.buf)
		if i+1 < len(p.start) {
			end = p.start[i+1]
		}
		p.vals = append(p.vals, p.buf[s:end:end])
	}
	return p.vals
}

func (p *params) u32(v uint32) { p.buf = binary.BigEndian.AppendUint32(p.buf, v) }

// int4 is a scalar int4 parameter.
func (p *params) int4(v int32) {
	p.start = append(p.start, len(p.buf))
	p.oids = append(p.oids, oidInt4)
	p.u32(uint32(v))
}

// array starts an array parameter of n elements of type oid (one
// dimension, lower bound 1, also when it is empty, as pgx writes it).
func (p *params) array(oid uint32, n int, nulls bool) {
	p.start = append(p.start, len(p.buf))
	p.oids = append(p.oids, arrayOf[oid])
	p.u32(1)
	if nulls {
		p.u32(1)
	} else {
		p.u32(0)
	}
	p.u32(oid)
	p.u32(uint32(n))
	p.u32(1)
}

func (p *params) null() { p.u32(0xFFFFFFFF) }

func (p *params) texts(v []string) {
	p.array(oidText, len(v), false)
	for _, s := range v {
		p.u32(uint32(len(s)))
		p.buf = append(p.buf, s...)
	}
}

// byteas encodes nil as NULL.
func (p *params) byteas(v [][]byte) {
	nulls := false
	for _, b := range v {
		nulls = nulls || b == nil
	}
	p.array(oidBytea, len(v), nulls)
	for _, b := range v {
		if b == nil {
			p.null()
			continue
		}
		p.u32(uint32(len(b)))
		p.buf = append(p.buf, b...)
	}
}

func (p *params) bools(v []bool) {
	p.array(oidBool, len(v), false)
	for _, b := range v {
		p.u32(1)
		if b {
			p.buf = append(p.buf, 1)
		} else {
			p.buf = append(p.buf, 0)
		}
	}
}

func (p *params) int2s(v []int16) {
	p.array(oidInt2, len(v), false)
	for _, x := range v {
		p.u32(2)
		p.buf = binary.BigEndian.AppendUint16(p.buf, uint16(x))
	}
}

func (p *params) int4s(v []int32) {
	p.array(oidInt4, len(v), false)
	for _, x := range v {
		p.u32(4)
		p.u32(uint32(x))
	}
}

func (p *params) int8s(v []int64) {
	p.array(oidInt8, len(v), false)
	for _, x := range v {
		p.u32(8)
		p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(x))
	}
}

// times encodes timestamptz values; with orNull, the zero time is NULL.
func (p *params) times(v []time.Time, orNull bool) {
	nulls := false
	if orNull {
		for _, t := range v {
			nulls = nulls || t.IsZero()
		}
	}
	p.array(oidTimestamptz, len(v), nulls)
	for _, t := range v {
		if orNull && t.IsZero() {
			p.null()
			continue
		}
		p.u32(8)
		p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(pgMicros(t)))
	}
}

// pgMicros is t as PostgreSQL's timestamptz: microseconds since
// 2000-01-01 00:00 UTC.
func pgMicros(t time.Time) int64 {
	const y2k = 946684800 // Unix time of 2000-01-01 00:00 UTC
	return (t.Unix()-y2k)*1_000_000 + int64(t.Nanosecond())/1000
}

var errResult = errors.New("postgres: unexpected result of xmpptrack_commit")

// int4Array decodes a binary int4[] of one dimension (or none: empty)
// without NULLs, appending to dst.
func int4Array(dst []int32, b []byte) ([]int32, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("%w: array of %d bytes", errResult, len(b))
	}
	ndim, oid := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[8:])
	if oid != oidInt4 || ndim > 1 {
		return nil, fmt.Errorf("%w: array of type %d, %d dimensions", errResult, oid, ndim)
	}
	if ndim == 0 {
		return dst, nil
	}
	if len(b) < 20 {
		return nil, fmt.Errorf("%w: array of %d bytes", errResult, len(b))
	}
	n := int(binary.BigEndian.Uint32(b[12:]))
	b = b[20:]
	if len(b) != 8*n {
		return nil, fmt.Errorf("%w: %d elements in %d bytes", errResult, n, len(b))
	}
	for i := range n {
		if binary.BigEndian.Uint32(b[8*i:]) != 4 {
			return nil, fmt.Errorf("%w: an element is not an int4", errResult)
		}
		dst = append(dst, int32(binary.BigEndian.Uint32(b[8*i+4:])))
	}
	return dst, nil
}
