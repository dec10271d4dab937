package xmpptrack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// Helpers for scripted servers (see scripted_test.go).

var testJID = jid.MustParse("alice@localhost")

const plainOnly = `<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>`

// openStream reads the client's stream header and answers with ours and the
// given features.
func openStream(conn net.Conn, d *xml.Decoder, features string) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		if start, ok := tok.(xml.StartElement); ok && start.Name.Local == "stream" {
			break
		}
	}
	_, err := fmt.Fprintf(conn, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'><stream:features>%s</stream:features>", features)
	return err
}

// testCertificate returns a server configuration with a certificate for
// localhost that testRoots trusts.
func testCertificate(t *testing.T) *tls.Config {
	t.Helper()
	cert, _ := testCertificates()
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

func testRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	_, roots := testCertificates()
	return roots
}

// testCertificates makes one self-signed certificate for localhost.
var testCertificates = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
})

// TestDialLogsLogin: Config.Logger reaches the login stack, whose debug
// records name the SASL mechanism and the finished session.
func TestDialLogsLogin(t *testing.T) {
	rec := &logRecorder{}
	_, _ = newPeer(t, Config{Logger: slog.New(rec)})
	for _, msg := range []string{"xmpptrack: SASL", "xmpptrack: session ready"} {
		if rec.count(msg) != 1 {
			t.Errorf("%d records %q, want 1", rec.count(msg), msg)
		}
	}
}
