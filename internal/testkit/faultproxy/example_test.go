package faultproxy_test

import (
	"fmt"
	"io"
	"log"
	"net"

	"github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
)

// A client talks to an echo server through the proxy until the test cuts
// the connection.
func ExampleProxy_Cut() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	p, err := faultproxy.Listen(faultproxy.Config{Target: ln.Addr().String(), Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	buf := make([]byte, 5)
	io.ReadFull(c, buf)
	fmt.Println(string(buf))

	fmt.Println("cut:", p.Cut())
	_, err = c.Read(buf)
	fmt.Println("the client sees a reset:", err != nil && err != io.EOF)
	// Output:
	// hello
	// cut: 1
	// the client sees a reset: true
}

// XMPPUnits finds where the pieces of an XMPP client stream end; an Aligned
// proxy forwards only whole pieces.
func ExampleXMPPUnits() {
	data := []byte(`<stream:stream xmlns='jabber:client'><message id='a'><body>hi</body></message><r xmlns='urn:xmpp:sm:3'/><message id='b'><bo`)
	for len(data) > 0 {
		n, unit, _ := faultproxy.XMPPUnits(data, false)
		if n == 0 {
			fmt.Printf("incomplete: %s\n", data)
			break
		}
		fmt.Printf("unit: %s\n", unit)
		data = data[n:]
	}
	// Output:
	// unit: <stream:stream xmlns='jabber:client'>
	// unit: <message id='a'><body>hi</body></message>
	// unit: <r xmlns='urn:xmpp:sm:3'/>
	// incomplete: <message id='b'><bo
}
