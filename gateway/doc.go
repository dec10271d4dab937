// Package gateway is an HTTP API for tracked XMPP messages, for programs in
// any language: send a message, get an id, and learn what happened to it by
// asking, by following a feed of changes with a cursor, or by a signed
// webhook. A Gateway is an http.Handler; the program examples/gateway runs
// one. It uses only the public API of this module.
//
// # Wiring
//
//	st, _ := sqlite.Open(ctx, "xmpptrack.db") // without Store: a record in memory
//	g, _ := gateway.New(gateway.Config{Tokens: tokens, Store: st})
//	c, _ := xmpptrack.Dial(ctx, account, password, &xmpptrack.Config{
//		OnStateChange: g.OnStateChange, Store: g.ClientStore()})
//	g.AddAccount(gateway.Account{JID: account, Client: c})
//	http.ListenAndServe("127.0.0.1:8080", g)
//
// With a store, log each account in with a resource of its own (account
// "alerts@example.org/gateway-1", say): its client's part of the store
// (lease, pending messages, stream) belongs to that account and resource.
//
// # Routes (v1)
//
//	POST   /v1/messages       send {"to","body","type"?,"from"?,"thread"?,"window"?,
//	                          "send_at"?,"channel"?,"wait"?,"wait_timeout"?};
//	                          202 {"id","state","cursor","settled"}
//	GET    /v1/messages/{id}  {"id","to","state","settled","history":[{"state","at",...}],...}
//	DELETE /v1/messages/{id}  cancel a scheduled message not sent yet: CLOSED
//	GET    /v1/events         ?after=&channels=&limit=&wait=: the changes after a cursor
//	POST   /v1/notify         {"to","title","body","priority":0-3}
//	POST   /v1/test           {"to"}: send a test message, wait for DELIVERED_TO_RECIPIENT
//	GET    /v1/openapi.json   the OpenAPI 3.1 description of all of this
//	GET    /healthz, /readyz  liveness; readiness (XMPP connected, record reachable)
//	GET    /metrics           Prometheus metrics
//	GET    /                  the status page
//
// JSON in and out; durations are strings in Go's syntax ("30s", "5m"), times
// RFC 3339, states the tracker's names ("SEEN_BY_RECIPIENT"), cursors strings
// of decimal digits. A request body that is not valid UTF-8, or that
// escapes half a UTF-16 surrogate pair ("\ud800"), is refused (400
// malformed-json) rather than sent with U+FFFD in its place. Member
// names are matched exactly, each at most once, as openapi.json has them:
// any other name, a case variant ("TO") too, is unknown-field, and a name
// given twice is malformed-json, both naming it in "field".
//
// # Sending
//
// A message is recorded (IN_TRANSIT, with a cursor) before it is handed to the
// account's client, so every state it reaches after that is in its history
// and in the feed. "type" is "chat" (the default) or "groupchat"; for a group
// chat "to" is the room's bare JID and the gateway joins the room on first use
// with the account's nick (Account.Nick), and again after it left or was
// kicked. "from" names the account by bare JID; without it the first account
// added sends.
//
// With "wait" ("server", "delivered" or "seen": DELIVERED_TO_SERVER,
// DELIVERED_TO_RECIPIENT, SEEN_BY_RECIPIENT) the request is held until that
// state, or a state from which it cannot be reached (ERROR, ABORTED,
// TIMED_OUT, CLOSED), or "wait_timeout" (default 30 s, at most
// Config.MaxWait), or Gateway.Close. The answer is 200 with "reached": true
// when the state was reached, else 202 with "reached": false and the state
// it is in.
//
// An Idempotency-Key header (1 to 255 printable ASCII characters) makes a
// retry safe: the same key with the same request, from the same token, within
// 24 hours, returns the first message's id and current state (header
// Idempotent-Replayed: true) and sends nothing; the same key with a different
// request is refused (idempotency-mismatch). Keys belong to a token. The
// outcome is replayed as it is: a message whose send failed (502
// send-failed, ABORTED) is answered ABORTED again; only a send that nothing
// recorded (503 unavailable, see Record) is sent by a retry, and one whose
// outcome is unknown (503 send-uncertain, see Record) is sent by a retry
// only if it was not recorded; to send a failed message again, use a new
// key.
//
// "send_at" (RFC 3339) schedules the message (one not in the future is sent
// at once); until then it is IN_TRANSIT with "send_at" in its status, which
// keeps it after it is sent, and DELETE /v1/messages/{id} cancels it
// (CLOSED). A message that is sent can no longer be cancelled
// (not-cancellable). The in-memory record keeps scheduled messages in memory
// only: they are not sent if the process ends first.
//
// Two requests with one Idempotency-Key at the same time send one message:
// the one that finds it taken answers with it as a replay (with a store, the
// store takes a message id once and decides which).
//
// # Notifications and tests
//
// POST /v1/notify sends the title as the message's subject and the body as
// its body (the title when the body is empty). The priority (default 1)
// changes how long the message is tracked and whether servers should keep it
// (XEP-0334 hints): 0 tracks for 1 minute and asks servers not to store it
// (<no-store/>: a notice that is useless later); 1 uses the client's window;
// 2 tracks for 1 hour and 3 for 24 hours, both with <store/>, so that an
// offline recipient gets it from its server's offline storage or archive.
//
// POST /v1/test sends "xmpptrack gateway test message (<time>)" and waits for
// DELIVERED_TO_RECIPIENT ("timeout", default 30 s): 200 when it arrived,
// 502 test-failed when the message failed (ERROR, ABORTED, TIMED_OUT), 504
// test-timeout when the wait ended first. The recipient must answer receipt
// requests for the test to pass.
//
// # The feed
//
// Every state change gets a cursor, greater than every earlier one.
// GET /v1/events?after=C returns the changes after C, oldest first, up to
// "limit" (default 100, at most 1000), and "cursor": the value to pass as
// after next time (it moves past changes the channel filter left out). A
// page may hold fewer than "limit" changes with more to come: only an empty
// one says the follower is at the newest change.
// after=0 starts from the oldest change kept; without after, from now. When
// there is nothing yet, the request waits up to "wait" (default 30 s, at most
// Config.MaxWait; "0s" answers at once). A cursor ahead of the newest change
// is refused (invalid-cursor); one older than what is kept is cursor-expired.
//
// With "Accept: text/event-stream" the same feed is a stream of Server-Sent
// Events, one "change" event per state change, whose id is the cursor: a
// browser's EventSource resumes with Last-Event-ID. A comment line is sent
// every 15 s when nothing happens.
//
// # Webhooks
//
// Each Config.Webhooks URL receives a POST per state change (optionally only
// for some channels), in feed order, so in order per message, with the body
// {"type":"message.state","timestamp","data":<event>} and the Standard
// Webhooks headers: webhook-id ("evt_<cursor>", the same on every retry),
// webhook-timestamp (Unix seconds) and webhook-signature ("v1,<base64
// HMAC-SHA256 over id.timestamp.body>", see Sign). A change is retried with
// exponential backoff (1 s doubling to 10 minutes) until the receiver answers
// 2xx or 24 hours have passed; later changes wait for it (order first).
// Redirects are not followed: a 3xx answer is a failed attempt, retried and
// logged like a 5xx (a receiver that moved needs its new URL configured).
//
// The outbox is the feed itself plus a cursor per webhook. With a store the
// cursor is saved in it after every delivery, and one gateway at a time
// delivers to a webhook (it holds the cursor job's claim, a one-minute lease
// renewed while it works): a restarted gateway, or another one on the same
// store, goes on from the saved cursor, so a restart loses no delivery. A
// change may come twice: one delivered just before a crash, or before a
// save of its cursor that the store refused, is delivered again from the
// cursor saved last. A gateway delivers only while it can count on the
// claim: a save the store refuses stops it at once, and it never
// delivers, nor writes the cursor, within 10 s of its lease's end (an
// attempt still going then is cut, a failed attempt); it then claims the
// job again like any other gateway (so their clocks should agree within
// those 10 s). Without a store the cursor
// is in memory and a restart starts from the newest change.
//
// # Security
//
// Every route but GET /healthz needs "Authorization: Bearer <token>", one of
// Config.Tokens. Tokens are compared through their SHA-256 in constant time,
// against all configured tokens every time. Every token may read and cancel
// every message: tokens are credentials, not tenants. Each token has its
// own rate limit (Config.RateLimit, Burst: 429 rate-limited with
// Retry-After), and requests without a valid token share one limit per
// client address, so that guessing tokens is slow. Request bodies are limited to Config.MaxBody (64 KiB). No CORS
// headers are sent, so browsers refuse cross-origin calls. Tokens, passwords
// and webhook secrets are never logged; logs name a token by a short hash
// prefix and a webhook by its URL without credentials and query.
//
// The status page GET / is a browser's view of the feed. A browser cannot
// send a bearer header on navigation, so an unauthenticated GET / that accepts
// HTML gets a login form (status 401); it posts the token to /login, which
// sets it as an HttpOnly, SameSite=Strict cookie. The cookie is accepted on
// GET requests only, so it cannot be used to send or cancel messages.
//
// # Errors
//
// Errors are RFC 9457 problem documents (application/problem+json) whose
// "type" is ProblemTypePrefix followed by a stable name:
//
//	400 malformed-json, unknown-field, wrong-type, invalid-cursor,
//	    wait-too-long, invalid-query, invalid-idempotency
//	401 unauthorized            404 not-found          405 method-not-allowed
//	409 not-cancellable         410 cursor-expired, idempotency-gone
//	413 body-too-large
//	415 unsupported-media       429 rate-limited
//	422 missing-field, invalid-field, invalid-jid, invalid-duration,
//	    invalid-time, unknown-account, idempotency-mismatch
//	502 send-failed, test-failed       503 unavailable, send-uncertain
//	504 test-timeout            500 internal
//
// Problems about a field name it in "field"; problems about a message carry
// its "id" and "state". A request that gets a 4xx problem changed nothing.
//
// # Record
//
// Without a store the gateway keeps its record in memory: the newest
// Config.MaxMessages messages and Config.MaxEvents changes, lost with the
// process; scheduled messages are kept in memory too. Its idempotency keys
// last their 24 hours however many messages follow: a retry under a key
// whose message the record no longer keeps sends nothing and is answered
// 410 idempotency-gone with the message's id (a replay would have no
// state to tell, and sending it again could deliver it twice).
//
// With Config.Store (store/sqlite, or a shared PostgreSQL store for several
// gateways) the record is durable, and it is the accounts' clients' record:
// give each client Gateway.ClientStore() (Config.Store, through which the
// gateway learns each message's cursor) as xmpptrack.Config.Store, and a
// resource of its own. A client records each message before writing it (with its
// channel, xmpptrack.Message.Channel) and every state change after, so the
// gateway writes nothing for a message that was sent: it reads the store.
// A client restarted on the store (same account and resource) takes its
// pending messages back, so a message pending when a gateway stopped still
// reaches its final state in the record afterwards. What the gateway writes
// itself are the messages no client tracks, recorded settled in one batch
// under the owner {account, "gateway"} with the accepted request (JSON) as
// their Raw: a send that failed before it was tracked (ABORTED), a
// scheduled message cancelled (CLOSED) or that could not be scheduled
// (ABORTED). Every instance on the store answers for every message and
// serves one feed, in one order. The store keeps settled messages for its
// retention time (7 days by default), so the gateway never answers
// cursor-expired there. The store's evidence has no room for the seen-by
// list and the error type: with a store, error.kind is not kept, and
// seen_by holds only the nick of the occupant whose marker made the change.
// Idempotency keys are the store's keys (24 hours), shared by all
// instances. A send that its client could not record (the store failed)
// was not sent either: the answer is 503 unavailable with the message's id,
// which is in no record (GET answers not-found), and a retry under the same
// Idempotency-Key sends it, under that id. A send its client could not
// tell it recorded (xmpptrack.ErrRecordUncertain: the store failed during
// the write) is decided by the gateway's record of it ABORTED, which the
// store takes only if the client's record did not land: the answer is
// then 502 send-failed, or, when the client's record holds the id, 202 with
// the message pending (its client sends it once it finds the record).
// When the store refuses that record too, the outcome is unknown and the
// answer says so: 503 send-uncertain with the message's id, never
// send-failed. The message is then sent if its record landed; GET
// /v1/messages/{id} (not-found while nothing readable holds it) and the
// feed show it if so, and a retry under the same Idempotency-Key answers
// with that record, or sends the message under that id if there is none,
// so it is never sent twice.
//
// A scheduled message is a job of the store, due at send_at, and a key
// holding its request (which GET /v1/messages/{id} reads until it is sent):
// it enters the feed when it is sent (its client records it then; in
// memory it is in the feed from the start), so its IN_TRANSIT change is
// dated when it was sent, and the cursor of the POST answer, and of a
// replay while it waits, is the feed's head when it was answered: its
// changes come after that cursor. Whichever gateway claims the job when due
// sends it, and it survives restarts; a gateway without the message's
// account (another instance's, or one started before its accounts were
// added) hands the job back for another two seconds. A cancel and a send
// race for a per-message decision key, so a cancelled message is never
// sent and a message being sent is never reported cancelled; the decision
// also keeps send_at and the time the request was accepted, shown once the
// message is sent. A gateway that dies between claiming and sending, or a
// send its client could not record, leaves the job to be sent again after
// a one-minute lease (its client refuses the id if the message was
// recorded already). Due messages are sent one after the other, each
// waiting up to Config.SendTimeout for its account's connection.
//
// Reading the record (GET, a refused DELETE) writes nothing to the store.
//
// The gateway learns of changes through Config.OnStateChange: without a
// store it records them in memory, with one it counts them in its metrics
// (the client records them).
//
// # Cost
//
// A message sent through POST /v1/messages costs the sending process what
// Client.Send costs plus, measured on loopback with 1,000 concurrent
// keep-alive connections on a shared two-core machine (the bench program
// internal/testkit/cmd/gatewaybench; conditions and numbers on the
// repository's benchmarks page), about 35 to 40 µs of CPU: net/http's
// server about half (most of it the system calls that read the request and
// write the answer), the handler about a fifth (authentication,
// decoding, validation, the in-memory record (with a store the client
// records the message), the answer, the state-change callback) and the
// garbage collector most of the rest. With a store, a POST costs the store
// what a direct Send does, the client's write-ahead of the message, and
// nothing of the gateway's own. An Idempotency-Key adds one write, its
// claim, which the store gathers with the claims of concurrent requests
// (with SQLite, in the same transaction as their write-aheads); send_at
// adds a job and a key. Where measured, a keyed POST cost the gateway's
// process 1.15 to 1.3 times a plain one with SQLite. With PostgreSQL it
// cost 1.07 to 1.28 times, and PostgreSQL 1.15 to 1.39 times its work for a
// plain one, before a group's claims went into one transaction of their
// own (which costs PostgreSQL 1.4 to 1.8 times that claim work again, in
// the store's benchmark); these runs were as noisy as the differences. net/http reads three times per request
// (the request; its background read, which detects a client that went
// away, and its wait for the next request, which both find nothing):
// reading the body without reaching its end does not avoid the background
// read (net/http then reads the rest when the answer's header is written,
// and starts it there). The usual body of POST /v1/messages
// (string members without escape sequences) is decoded without
// encoding/json, at a tenth of its cost; any other body is decoded by
// encoding/json, which gives every error. With a Store, and apart from
// what net/http and the account's XMPP client allocate, a plain POST
// allocates only what it keeps: the decoded fields, the recipient's parsed
// JID, the message id and the live tracker entry (9 objects, 10 for a
// recipient with a resource; the in-memory record adds the message's
// status and history). A body within its Content-Length is read into a
// pooled buffer without a limiting reader (http.MaxBytesReader only for a
// body of unknown length; one declared over the limit is refused unread,
// without "100 Continue", and on HTTP/1.x the connection closes after the
// answer), a recipient already in normalized form is kept as given, and the
// token is hashed from a copy on the stack. The answer has two headers,
// which net/http copies once the status is written, and no Content-Length
// of ours: written whole before the handler returns, it
// gets net/http's. The gateway serves whatever protocol
// its http.Server speaks; HTTP/2 without TLS (http.Server.Protocols) cost
// net/http's server more CPU per request than HTTP/1.1 where it was tried,
// so examples/gateway does not enable it: clients that send many messages
// at once should keep several HTTP/1.1 connections open.
//
// HTTP/1.1 clients may pipeline requests (write several before the first
// answer, as Node's undici can with its pipelining option): net/http
// answers a connection's requests in their order, one at a time, so a POST
// with "wait" holds the requests behind it, and a connection has one
// request in the gateway at a time. Pipelining spares the server most of
// its reads, but the same number of requests in flight then keeps fewer in
// the gateway at once, and with a store the sends' write-aheads gather into
// smaller transactions, which cost at least what the reads saved. POST
// is not idempotent: a client that pipelines POSTs should give each an
// Idempotency-Key, so that after a connection breaks it can send again the
// requests not answered without sending any message twice (RFC 9112,
// section 9.3.2).
package gateway
