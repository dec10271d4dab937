package faultproxy

import "bytes"

// XMPPUnits is a Config.Units for the client side of an XMPP stream (RFC
// 6120): it splits it into the pieces a server parses one at a time, the
// XML declaration, the <stream:stream> header, each top-level element
// (stanzas, stream management and negotiation elements), the closing
// </stream:stream>, and the text (white space) between them. It follows the
// bufio.SplitFunc contract. It understands quoted attribute values,
// self-closing tags, processing instructions and comments; like XMPP it
// assumes no DTD. Malformed input is returned in pieces ending at the next
// '>' rather than rejected.
func XMPPUnits(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if len(data) == 0 {
		return 0, nil, nil
	}
	if data[0] != '<' {
		// Text between units: it can go at once, up to the next tag.
		if i := bytes.IndexByte(data, '<'); i >= 0 {
			return i, data[:i], nil
		}
		return len(data), data, nil
	}
	depth, i := 0, 0
	for {
		end, ok := tagEnd(data[i:])
		if !ok {
			break
		}
		tag := data[i : i+end]
		i += end
		switch {
		case tag[1] == '?' || tag[1] == '!': // declaration, PI, comment
		case tag[1] == '/':
			depth--
		case tag[len(tag)-2] == '/': // self-closing
		case depth == 0 && isStreamHeader(tag):
			return i, data[:i], nil
		default:
			depth++
		}
		if depth <= 0 {
			return i, data[:i], nil
		}
		j := bytes.IndexByte(data[i:], '<')
		if j < 0 {
			break
		}
		i += j
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// tagEnd returns the length of the markup that b starts with ('<' first):
// up to "?>" for a processing instruction, "-->" for a comment, else the
// first '>' outside quotes.
func tagEnd(b []byte) (int, bool) {
	switch {
	case bytes.HasPrefix(b, []byte("<?")):
		if i := bytes.Index(b, []byte("?>")); i >= 0 {
			return i + 2, true
		}
		return 0, false
	case bytes.HasPrefix(b, []byte("<!--")):
		if i := bytes.Index(b[4:], []byte("-->")); i >= 0 {
			return i + 7, true
		}
		return 0, false
	}
	var quote byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i + 1, true
		}
	}
	return 0, false
}

// isStreamHeader reports whether a start tag opens an XMPP stream, which
// stays open: it is a unit by itself.
func isStreamHeader(tag []byte) bool {
	const name = "<stream:stream"
	return bytes.HasPrefix(tag, []byte(name)) && len(tag) > len(name) &&
		(tag[len(name)] == ' ' || tag[len(name)] == '>' || tag[len(name)] == '\t' ||
			tag[len(name)] == '\n' || tag[len(name)] == '\r' || tag[len(name)] == '/')
}
