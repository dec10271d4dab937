// Command gateway runs the HTTP API of package gateway for one or more XMPP
// accounts: programs in any language send tracked messages and learn what
// happened to them (see the package's documentation for the API).
//
//	XMPP_PASSWORD=... go run ./examples/gateway -jid alerts@example.org -token-file tokens.txt
//
// Flags:
//
//	-listen ADDR          HTTP address (default 127.0.0.1:8080)
//	-jid JID              the account (or use -config)
//	-password-file F      its password (else the XMPP_PASSWORD environment variable)
//	-addr host:port       its server (default: from the JID's domain)
//	-nick NICK            its nick in group chats (default: the JID's local part)
//	-plaintext            allow login without TLS (loopback testing only)
//	-insecure             skip certificate verification (testing only)
//	-store PATH|DSN       the record: a SQLite file (default ./xmpptrack.db), a postgres:// DSN,
//	                      or "memory" (lost at exit; scheduled messages too)
//	-resource NAME        this instance's name: the accounts' resources start with it (default gateway)
//	-token-file F         API tokens, one per line (required)
//	-config F             several accounts and webhooks (JSON; see below)
//	-webhook URL          a webhook receiving every state change ...
//	-webhook-secret-file F  ... signed with the secret in this file
//	-tls-cert F, -tls-key F  serve HTTPS
//	-insecure-http        allow plain HTTP on a non-loopback address
//	-rate-limit N         requests per second per token (default 100; negative: none)
//	-rate-burst N         requests a token may make at once (default 2 × the rate)
//	-v                    debug logging
//
// The accounts' clients record their messages in the -store themselves
// (write-ahead, then every state change), which is the gateway's record;
// each logs in with a resource of its own: the one its JID names, else
// -resource followed by a hash of the account ("gateway-1f2e3d4c"). A
// restarted gateway with the same -resource takes back the messages still
// pending (their trackers, the stream if the server still holds it, and a
// re-send of those the server never acknowledged), so receipts and markers
// that arrive after the restart still reach the record. With a postgres://
// DSN several gateways share one record: give each its own -resource (a
// resource is held by one process at a time), and restart a stopped one
// with its -resource to take its pending messages back. A JID that names a
// resource (-jid or "jid" in -config) is used as it is, whatever -resource
// says, so two instances need JIDs with different resources then. Messages
// left pending under a resource no instance uses any more stay pending in
// the record.
//
// Listening on an address other than loopback needs -tls-cert and -tls-key,
// unless -insecure-http says otherwise (behind a TLS-terminating proxy).
// When the gateway is ready it prints one line to standard output:
//
//	xmpptrack gateway ready on http://127.0.0.1:8080 (accounts: alerts@example.org)
//
// SIGINT or SIGTERM shut it down gracefully.
//
// The -config file is JSON:
//
//	{
//	  "accounts": [
//	    {"jid": "alerts@example.org", "password_file": "/run/secrets/alerts",
//	     "addr": "xmpp.example.org:5222", "nick": "alerts"},
//	    {"jid": "ci@example.org", "password_env": "CI_XMPP_PASSWORD"}
//	  ],
//	  "webhooks": [
//	    {"url": "https://hooks.example.org/xmpp", "secret_file": "/run/secrets/hook",
//	     "channels": ["ops"], "retry_for": "24h"}
//	  ]
//	}
//
// An account given with -jid comes first (the default sender), then those of
// the file. Passwords and secrets are read from files or environment
// variables, never from the command line, and never logged.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gateway:", err)
		}
		os.Exit(1)
	}
}

type options struct {
	listen, jid, passwordFile, addr, nick, store string
	resource                                     string
	tokenFile, config, webhook, webhookSecret    string
	tlsCert, tlsKey                              string
	plaintext, insecure, insecureHTTP, verbose   bool
	rateLimit                                    float64
	rateBurst                                    int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HTTP `address`")
	fs.StringVar(&o.jid, "jid", "", "the XMPP account")
	fs.StringVar(&o.passwordFile, "password-file", "", "password `file` (else XMPP_PASSWORD)")
	fs.StringVar(&o.addr, "addr", "", "server `host:port` (default: from the JID)")
	fs.StringVar(&o.nick, "nick", "", "nick in group chats")
	fs.StringVar(&o.store, "store", "./xmpptrack.db", "the record: a SQLite `path` or a postgres:// DSN")
	fs.StringVar(&o.resource, "resource", "gateway", "this instance's `name`: the accounts log in with resources starting with it")
	fs.StringVar(&o.tokenFile, "token-file", "", "API tokens `file`, one per line")
	fs.StringVar(&o.config, "config", "", "accounts and webhooks `file` (JSON)")
	fs.StringVar(&o.webhook, "webhook", "", "webhook `URL`")
	fs.StringVar(&o.webhookSecret, "webhook-secret-file", "", "webhook secret `file`")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate `file`")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS key `file`")
	fs.BoolVar(&o.plaintext, "plaintext", false, "allow XMPP login without TLS (loopback testing only)")
	fs.BoolVar(&o.insecure, "insecure", false, "skip XMPP certificate verification (testing only)")
	fs.BoolVar(&o.insecureHTTP, "insecure-http", false, "allow plain HTTP on a non-loopback address")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	fs.Float64Var(&o.rateLimit, "rate-limit", 100, "requests per second per token (negative: no limit)")
	fs.IntVar(&o.rateBurst, "rate-burst", 0, "requests a token may make at once (default: twice the rate)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.tokenFile == "" {
		return o, errors.New("-token-file is required: every route but /healthz needs a token")
	}
	if o.jid == "" && o.config == "" {
		return o, errors.New("give -jid or -config")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("-tls-cert and -tls-key go together")
	}
	if (o.webhook == "") != (o.webhookSecret == "") {
		return o, errors.New("-webhook and -webhook-secret-file go together")
	}
	if o.tlsCert == "" && !o.insecureHTTP && !loopback(o.listen) {
		return o, fmt.Errorf("-listen %s is not a loopback address: give -tls-cert and -tls-key, or -insecure-http behind a TLS proxy", o.listen)
	}
	return o, nil
}

// loopback reports whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	tokens, err := readTokens(o.tokenFile)
	if err != nil {
		return fmt.Errorf("-token-file: %v", err)
	}
	var accounts []accountConfig
	var hooks []gateway.Webhook
	if o.jid != "" {
		a := accountConfig{JID: o.jid, PasswordFile: o.passwordFile, PasswordEnv: "XMPP_PASSWORD",
			Addr: o.addr, Nick: o.nick, Plaintext: o.plaintext, Insecure: o.insecure}
		if o.passwordFile != "" {
			a.PasswordEnv = ""
		}
		if err := a.resolve(); err != nil {
			return err
		}
		accounts = append(accounts, a)
	}
	if o.webhook != "" {
		h, err := webhookConfig{URL: o.webhook, SecretFile: o.webhookSecret}.webhook()
		if err != nil {
			return err
		}
		hooks = append(hooks, h)
	}
	if o.config != "" {
		fc, err := loadConfig(o.config)
		if err != nil {
			return err
		}
		accounts = append(accounts, fc.Accounts...)
		for _, w := range fc.Webhooks {
			h, err := w.webhook()
			if err != nil {
				return err
			}
			hooks = append(hooks, h)
		}
	}
	if len(accounts) == 0 {
		return errors.New("no account")
	}

	rec, closeStore, err := openStore(ctx, o.store)
	if err != nil {
		return err
	}
	defer closeStore()
	g, err := gateway.New(gateway.Config{Tokens: tokens, Webhooks: hooks, Logger: log, Store: rec,
		RateLimit: o.rateLimit, Burst: o.rateBurst})
	if err != nil {
		return err
	}
	defer g.Close()

	var clients []*xmpptrack.Client
	defer func() {
		// With a store of their own, pending messages stay pending in it
		// for the next start; without, Close ends their tracking.
		for _, c := range clients {
			c.Close()
		}
	}()
	var names []string
	for _, a := range accounts {
		cfg := &xmpptrack.Config{
			Addr:           a.Addr,
			AllowPlaintext: a.Plaintext,
			OnStateChange:  g.OnStateChange,
			Logger:         log.With("account", a.account.String()),
		}
		if a.Insecure && !a.Plaintext {
			cfg.TLSConfig = &tls.Config{ServerName: a.account.Domainpart(), InsecureSkipVerify: true}
		}
		login := a.account
		if rec != nil {
			// The client records its messages in the gateway's record,
			// under its account and resource: the next start with the same
			// resource takes back what this one left pending.
			cfg.Store = g.ClientStore()
			if login, err = a.account.WithResource(clientResource(a, o.resource)); err != nil {
				return err
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := xmpptrack.Dial(dctx, login, a.password, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", a.account, err)
		}
		clients = append(clients, c)
		if err := g.AddAccount(gateway.Account{JID: a.account, Client: c, Nick: a.Nick}); err != nil {
			return err
		}
		names = append(names, a.account.String())
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- srv.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	fmt.Fprintf(stdout, "xmpptrack gateway ready on %s://%s (accounts: %s)\n", scheme, ln.Addr(), strings.Join(names, ", "))

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.Close() // ends long polls, event streams and waiting POSTs (answered) first
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}
