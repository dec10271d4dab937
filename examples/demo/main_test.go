package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// The installation step, with the system replaced.
func TestExampleDemoInstall(t *testing.T) {
	missing := errors.New("prosody: executable file not found in $PATH")
	tests := []struct {
		name      string
		installed bool // before
		root      bool
		apt       bool
		failFirst bool     // the first apt-get install fails (no package lists)
		wantCalls []string // apt-get invocations
		wantErr   string   // substring; "" for success
	}{
		{name: "present", installed: true, root: false},
		{name: "not root", root: false, apt: true, wantErr: installCommand},
		{name: "no apt-get", root: true, wantErr: "apt-get is missing"},
		{name: "root", root: true, apt: true, wantCalls: []string{"install -y prosody"}},
		{name: "root, stale lists", root: true, apt: true, failFirst: true,
			wantCalls: []string{"install -y prosody", "update", "install -y prosody"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			installed := tc.installed
			var calls []string
			in := installer{
				available: func() error {
					if installed {
						return nil
					}
					return missing
				},
				root: tc.root,
			}
			if tc.apt {
				in.aptGet = func(args ...string) error {
					calls = append(calls, strings.Join(args, " "))
					if args[0] == "install" {
						if tc.failFirst && len(calls) == 1 {
							return errors.New("exit status 100")
						}
						installed = true
					}
					return nil
				}
			}
			err := ensureProsody(io.Discard, in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ensureProsody: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ensureProsody = %v, want an error containing %q", err, tc.wantErr)
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Fatalf("apt-get calls %q, want %q", calls, tc.wantCalls)
			}
		})
	}
}
