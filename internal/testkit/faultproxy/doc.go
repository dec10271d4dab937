// Package faultproxy is a TCP proxy for tests: it listens on a loopback
// port, forwards every connection to one target (a test server) and breaks
// connections on purpose, so that reconnection and stream resumption can be
// exercised against real servers.
//
// # Cuts
//
// A cut closes both halves of a connection abruptly (SO_LINGER 0, so each
// side sees a reset rather than an orderly end of stream) and discards
// whatever the proxy had read but not forwarded. A connection is cut:
//
//   - on command, by [Proxy.Cut], which cuts every live connection;
//   - after a byte budget: with [Config.MaxBytes] (or [Proxy.SetBudget]) set,
//     each connection may forward a number of bytes drawn from
//     [MinBytes, MaxBytes], counted over both directions, and is cut at that
//     exact byte, mid-element if that is where it falls.
//
// With [Config.Aligned], cuts respect what the client wrote: the target
// receives whole units ([Config.Units], for example [XMPPUnits]: whole
// top-level elements) and an orderly end of stream, and has closed the cut
// connection before the next one reaches it, while the client still sees a
// reset at a random point. Some servers need this: Prosody 0.12 resumes a
// stream with the XML parser of an earlier connection, which a cut inside
// an element, or a connection still being parsed, leaves corrupt.
//
// Connections that end by themselves (either side closes) are relayed
// faithfully, half-closes included, and are not cuts. When the target
// refuses a connection (the server is down) the client's connection is
// closed at once, as if the port were closed.
//
// # Observing
//
// [Config.Tap] receives a copy of the bytes each connection forwarded in
// each direction, for tests that check what actually reached the server
// (for example, which stanzas a client retransmitted after a cut).
//
// # Reproducing a run
//
// Budgets come from a generator seeded with [Config.Seed] (a random seed
// when zero; [Proxy.Seed] reports it). The n-th connection accepted always
// gets the same budget for a given seed and range, so logging the seed is
// enough to replay the cut points of a failing test, up to how the client
// happens to split its writes among connections.
package faultproxy // import "github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
