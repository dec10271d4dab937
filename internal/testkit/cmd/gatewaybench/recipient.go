package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// The recipient runs in a child process of its own too (this program
// started again with -recipient-addr): reading every message is neither
// side's work, and in this process it would count as the library's or the
// gateway's CPU time. The parent writes a number of messages per line to
// its standard input; the child answers "ok" once it got that many in all,
// or "timeout N" with the number it got.

// recipientEnv carries the recipient's password to the child.
const recipientEnv = "GATEWAYBENCH_RECIPIENT_PASSWORD"

// recipient is the parent's handle on the child.
type recipient struct{ *child }

func startRecipient(srv *testserver.Server, local string) (*recipient, error) {
	ca, err := os.CreateTemp("", "gatewaybench-ca-*.pem")
	if err != nil {
		return nil, err
	}
	defer os.Remove(ca.Name()) // the child reads it before it says ready
	if _, err := ca.Write(srv.CertPEM()); err != nil {
		ca.Close()
		return nil, err
	}
	ca.Close()
	c, err := startChild("recipient", []string{recipientEnv + "=" + srv.Password(local)}, 4096,
		"-recipient-addr", srv.Addr(), "-recipient-jid", srv.JID(local).String(), "-recipient-ca", ca.Name())
	if err != nil {
		return nil, err
	}
	return &recipient{c}, nil
}

// wait waits until the recipient got n messages in all; false (with the
// number it got) if they did not all come within its timeout.
func (r *recipient) wait(n int64) (bool, int64, error) {
	f, err := r.ask(n)
	if err != nil {
		return false, 0, err
	}
	switch {
	case len(f) == 1 && f[0] == "ok":
		return true, n, nil
	case len(f) == 2 && f[0] == "timeout":
		got, _ := strconv.ParseInt(f[1], 10, 64)
		return false, got, nil
	}
	return false, 0, fmt.Errorf("recipient: %q", strings.Join(f, " "))
}

// recipientMain is the child: it logs in as jid, sends no receipts, and
// counts the messages it gets.
func recipientMain(addr, jidStr, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("recipient: no certificate in " + caFile)
	}
	var got arrivals
	c, err := xmpptrack.Dial(context.Background(), mustJID(jidStr), os.Getenv(recipientEnv), &xmpptrack.Config{
		Addr: addr, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		NoReceipts: true,
		OnMessage:  func(*xmpptrack.Client, *xmpptrack.Incoming) { got.add() },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.ParseInt(strings.TrimSpace(in.Text()), 10, 64)
		if err != nil {
			return err
		}
		if got.wait(n, 2*time.Minute) {
			fmt.Println("ok")
		} else {
			fmt.Println("timeout", got.load())
		}
	}
	return in.Err()
}
