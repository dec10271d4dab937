// Package testkit holds the project's test infrastructure, kept apart from
// the internal packages that ship in the library: real servers on loopback
// (testserver), third-party XMPP peers (interop), a TCP fault proxy
// (faultproxy), and the benchmark and test-report programs (cmd/...).
// Nothing outside tests, examples and those programs imports it.
package testkit
