package sm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{testDomain},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestCountsAcrossSTARTTLS: mellium re-installs the tees above TLS after
// STARTTLS, so counting, acks and resumption work on a TLS stream. This
// guards the undocumented mellium behaviour the package relies on.
func TestCountsAcrossSTARTTLS(t *testing.T) {
	cert := testCert(t)
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		if c.sess.ConnectionState().Version == 0 {
			t.Fatal("not TLS")
		}
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
			c.sc.send(fmt.Sprintf(`<message from='peer@example.org/x' id='s%d'/>`, i))
			c.sc.requestAck()
		}
		if evs := waitEvents(t, rec, 3); !slices.Equal(evs, []string{"acked:m0", "acked:m1", "acked:m2"}) {
			t.Fatal(evs)
		}
		synctest.Wait()
		if _, _, acks, errs := srv.snapshot(); !slices.Equal(acks, []uint32{1, 2, 3}) || len(errs) > 0 {
			t.Fatalf("answers %v %v", acks, errs)
		}
		holdAcks(srv)
		sendMsg(t, st, c.sess, "m3")
		synctest.Wait()
		c.drop()
		c = mustDial(t, srv, st, nil)
		if !st.Resumed() || rec.next(t) != "acked:m3" {
			t.Fatal("no resumption over TLS")
		}
		c.close()
	})
}
