package testserver_test

import (
	"context"
	"fmt"
	"log"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

func ExampleKinds() {
	for _, kind := range testserver.Kinds() {
		fmt.Println(kind)
	}
	// Output:
	// prosody
	// ejabberd
}

// A program (a demo or a benchmark) runs a server without archiving.
func ExampleLaunch() {
	srv, err := testserver.Launch(context.Background(), testserver.Prosody, testserver.Options{
		Accounts: []string{"alice", "bob"},
		NoMAM:    true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()
	fmt.Println(srv.Addr(), srv.JID("alice"), srv.Password("alice") != "")
}
