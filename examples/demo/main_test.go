package main

import (
	"errors"
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
		failAll   bool     // every apt-get install fails
		wantCalls []string // apt-get invocations
		wantErr   string   // substring; "" for success
		wantLines int      // lines printed
	}{
		{name: "present", installed: true, root: false},
		{name: "not root", root: false, apt: true, wantErr: installCommand},
		{name: "no apt-get", root: true, wantErr: "apt-get is missing"},
		{name: "root", root: true, apt: true, wantCalls: []string{"install -y prosody"}, wantLines: 1},
		{name: "root, stale lists", root: true, apt: true, failFirst: true,
			wantCalls: []string{"install -y prosody", "update", "install -y prosody"}, wantLines: 1},
		{name: "root, install fails", root: true, apt: true, failAll: true,
			wantCalls: []string{"install -y prosody", "update", "install -y prosody"}, wantLines: 1,
			wantErr: "E: Unable to locate package prosody"},
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
				in.aptGet = func(args ...string) ([]byte, error) {
					calls = append(calls, strings.Join(args, " "))
					out := []byte("Reading package lists...\nBuilding dependency tree...\n")
					if args[0] == "install" {
						if tc.failAll || tc.failFirst && len(calls) == 1 {
							return append(out, "E: Unable to locate package prosody\n"...), errors.New("exit status 100")
						}
						installed = true
					}
					return out, nil
				}
			}
			var printed strings.Builder
			err := ensureProsody(&printed, in)
			if n := strings.Count(printed.String(), "\n"); n != tc.wantLines || strings.Contains(printed.String(), "Reading package lists") {
				t.Errorf("printed %d lines, want %d, without apt-get's output:\n%s", n, tc.wantLines, printed.String())
			}
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
