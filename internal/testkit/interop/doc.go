// Package interop runs XMPP clients that nobody on this project wrote —
// slixmpp 1.8 and aioxmpp 0.13, as packaged by Debian — as the other party
// of integration tests and benchmarks of xmpptrack against the real servers
// of internal/testkit/testserver.
//
// # Peers
//
// A [Peer] is a Python process running one of the embedded scripts (see the
// py directory), written to a temporary directory at start-up and run with
// /usr/bin/python3 (never the first python3 in PATH: it may lack the Debian
// modules). [StartSlixmpp] and [StartAioxmpp] start a responder for a test
// and stop it in t.Cleanup; [Launch] does the same for programs, which call
// [Peer.Stop] themselves.
//
// A responder logs in, sends initial presence, and answers every chat or
// normal message that has a body and an id:
//
//   - with a XEP-0184 <received/> receipt when the message requests one
//     (slixmpp: its xep_0184 plugin with auto_ack; aioxmpp 0.13: its
//     DeliveryReceiptsService only tracks receipts of messages it sent, so the
//     script answers with aioxmpp.mdr.compose_receipt);
//   - then, after [Options].MarkDelay (negative: never), with a XEP-0333
//     <displayed/> marker for the message id, sent to the sender's bare JID
//     (slixmpp: xep_0333 stanza plugin; aioxmpp 0.13 has the marker XSOs in
//     aioxmpp.misc but no service, so the script builds the marker).
//
// The slixmpp responder can also join a room ([Options].Room) and mark group
// chat messages of other occupants ([Options].RoomMarkers), referencing the
// room's <stanza-id by=room/> when the room announces urn:xmpp:sid:0
// (XEP-0333 §4.3) and the message id otherwise.
//
// # Transport security
//
// With [Options].CertPEM set, a peer negotiates STARTTLS and trusts only that
// certificate (slixmpp: an ssl.SSLContext with that CA file; aioxmpp: a
// certificate verifier loading only that file, host name still checked).
// Without it the peer stays in plaintext, for loopback test servers only
// (slixmpp: STARTTLS disabled; aioxmpp: a connector of ours that never sends
// <starttls/>, since aioxmpp's own connector always upgrades when offered).
//
// # Events
//
// Every script writes one JSON object per line on its standard output, the
// "event" key naming its kind ([EventReady], [EventMessage], …); libraries'
// own output goes to standard error. [Peer.WaitEvent] and
// [Peer.WaitMessage] wait for events with a context; [Peer.Logs] returns
// standard error and output for failure messages.
//
// # Availability
//
// Without /usr/bin/python3 or the module, [Available] reports why and the
// Start functions skip the test, unless the environment variable CI is
// "true": then they fail it.
//
// # Benchmark
//
// [RunAioxmppBench] runs aioxmpp's BasicTrackingService and
// DeliveryReceiptsService on N tracked chat messages (receipt request and
// <markable/>) to a running responder and reports the time until every
// message was DELIVERED_TO_SERVER, DELIVERED_TO_RECIPIENT and
// SEEN_BY_RECIPIENT, the CPU time and the peak RSS of the Python process.
package interop // import "github.com/xmpptrack/xmpptrack/internal/testkit/interop"
