// Package examples holds the runnable example programs of xmpptrack (send,
// responder, demo) and their end-to-end tests against a real Prosody.
package examples
