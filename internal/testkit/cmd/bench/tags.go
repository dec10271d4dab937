package main

import "sync/atomic"

// tagCounter is an io.Writer that counts the start tags of a stream of XML
// by name: <r/> (XEP-0198 ack requests), <a/> (acks) and the three stanza
// kinds. It counts at any depth, which is exact for what the senders here
// write (top-level stanzas whose children have other names); '<' never
// appears unescaped in text or attribute values. Names with a prefix (the
// stream header) are not counted. Safe for one writer and concurrent
// readers.
type tagCounter struct {
	r, a, message, presence, iq atomic.Int64

	inName bool
	name   [9]byte
	nlen   int
}

// Write implements io.Writer; it never fails.
func (c *tagCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		switch {
		case b == '<':
			c.inName, c.nlen = true, 0
		case !c.inName:
		case b == ' ' || b == '/' || b == '>' || b == '\t' || b == '\n' || b == '\r':
			if c.nlen > 0 || b != '/' {
				c.end()
			} else {
				c.inName = false // an end tag
			}
		case c.nlen < len(c.name):
			c.name[c.nlen] = b
			c.nlen++
		default:
			c.inName = false // longer than any name we count
		}
	}
	return len(p), nil
}

func (c *tagCounter) end() {
	c.inName = false
	switch string(c.name[:c.nlen]) {
	case "r":
		c.r.Add(1)
	case "a":
		c.a.Add(1)
	case "message":
		c.message.Add(1)
	case "presence":
		c.presence.Add(1)
	case "iq":
		c.iq.Add(1)
	}
}

// stanzas returns the stanzas counted.
func (c *tagCounter) stanzas() int64 {
	return c.message.Load() + c.presence.Load() + c.iq.Load()
}
