package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/gateway"
)

// fileConfig is the format of -config: JSON, for several accounts and
// webhooks. Secrets are never inline: each names a file or an environment
// variable.
//
//	{
//	  "accounts": [
//	    {"jid": "alerts@example.org", "password_file": "/run/secrets/alerts",
//	     "addr": "xmpp.example.org:5222", "nick": "alerts"},
//	    {"jid": "ci@example.org", "password_env": "CI_XMPP_PASSWORD"}
//	  ],
//	  "webhooks": [
//	    {"url": "https://hooks.example.org/xmpp", "secret_file": "/run/secrets/hook",
//	     "channels": ["ops"]}
//	  ]
//	}
//
// The first account is the default sender. "plaintext" and "insecure" (both
// false by default) are per account, as the flags of the same names.
type fileConfig struct {
	Accounts []accountConfig `json:"accounts"`
	Webhooks []webhookConfig `json:"webhooks"`
}

type accountConfig struct {
	JID          string `json:"jid"`
	PasswordFile string `json:"password_file"`
	PasswordEnv  string `json:"password_env"`
	Addr         string `json:"addr"`
	Nick         string `json:"nick"`
	Plaintext    bool   `json:"plaintext"`
	Insecure     bool   `json:"insecure"`

	account  jid.JID
	resource string // the one the JID names, if any
	password string
}

type webhookConfig struct {
	URL        string   `json:"url"`
	SecretFile string   `json:"secret_file"`
	SecretEnv  string   `json:"secret_env"`
	Channels   []string `json:"channels"`
	RetryFor   string   `json:"retry_for"`
}

// loadConfig reads a -config file.
func loadConfig(path string) (fileConfig, error) {
	var c fileConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %v", path, err)
	}
	for i := range c.Accounts {
		if err := c.Accounts[i].resolve(); err != nil {
			return c, fmt.Errorf("%s: account %d: %v", path, i+1, err)
		}
	}
	return c, nil
}

func (a *accountConfig) resolve() error {
	j, err := jid.Parse(a.JID)
	if err != nil || j.Localpart() == "" {
		return fmt.Errorf("jid %q is not an account address (user@domain)", a.JID)
	}
	a.account = j.Bare()
	a.resource = j.Resourcepart()
	if a.password == "" {
		a.password, err = secret(a.PasswordFile, a.PasswordEnv)
		if err != nil {
			return fmt.Errorf("%s: password: %v", a.JID, err)
		}
	}
	return nil
}

// secret reads a secret from a file (trailing newline removed) or an
// environment variable.
func secret(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("%s is empty", file)
		}
		return s, nil
	case env != "":
		if s := os.Getenv(env); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("environment variable %s is empty", env)
	}
	return "", errors.New("give a file or an environment variable")
}

func (w webhookConfig) webhook() (gateway.Webhook, error) {
	s, err := secret(w.SecretFile, w.SecretEnv)
	if err != nil {
		return gateway.Webhook{}, fmt.Errorf("webhook %s: secret: %v", w.URL, err)
	}
	h := gateway.Webhook{URL: w.URL, Secret: s, Channels: w.Channels}
	if w.RetryFor != "" {
		d, err := time.ParseDuration(w.RetryFor)
		if err != nil {
			return h, fmt.Errorf("webhook %s: retry_for: %v", w.URL, err)
		}
		h.RetryFor = d
	}
	return h, nil
}

// readTokens reads API tokens, one per line; blank lines and lines starting
// with # are skipped.
func readTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no token", path)
	}
	return out, nil
}
