package interop

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		line    string
		want    Event
		wantErr bool
	}{
		{
			name: "ready",
			line: `{"event":"ready","jid":"bob@localhost/r","tls":true,"t":1700000000.5}`,
			want: Event{Kind: EventReady, JID: "bob@localhost/r", TLS: true, Time: time.Unix(1700000000, 5e8)},
		},
		{
			name: "message",
			line: `{"event":"message","from":"a@localhost/x","to":"b@localhost","id":"m1","type":"chat","body":"hi","thread":"","receipt_requested":true,"markable":true,"stanza_ids":[{"id":"s1","by":"b@localhost"}]}`,
			want: Event{Kind: EventMessage, From: "a@localhost/x", To: "b@localhost", ID: "m1", Type: "chat", Body: "hi",
				Receipt: true, Markable: true, StanzaIDs: []StanzaID{{ID: "s1", By: "b@localhost"}}},
		},
		{
			name: "marker_sent",
			line: `{"event":"marker_sent","id":"sid","message_id":"m1","to":"room@muc","type":"groupchat","by":"stanza-id"}`,
			want: Event{Kind: EventMarkerSent, ID: "sid", MessageID: "m1", To: "room@muc", Type: "groupchat", By: "stanza-id"},
		},
		{
			name: "stopped",
			line: `{"event":"stopped","code":1}`,
			want: Event{Kind: EventStopped, Code: 1},
		},
		{name: "not JSON", line: `print() output`, wantErr: true},
		{name: "no event", line: `{"id":"x"}`, wantErr: true},
		{name: "array", line: `[1]`, wantErr: true},
		{name: "absurd time", line: `{"event":"x","t":1e300}`, want: Event{Kind: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEvent([]byte(tc.line))
			if tc.wantErr {
				if !errors.Is(err, ErrNotEvent) {
					t.Fatalf("err = %v, want ErrNotEvent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Raw != tc.line {
				t.Errorf("Raw = %q", got.Raw)
			}
			got.Raw = ""
			if !got.Time.Equal(tc.want.Time) {
				t.Errorf("Time = %v, want %v", got.Time, tc.want.Time)
			}
			got.Time, tc.want.Time = time.Time{}, time.Time{}
			if !equalEvents(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func equalEvents(a, b Event) bool { return reflect.DeepEqual(a, b) }

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"event":"ready","jid":"a@b/c","t":1.5}`))
	f.Add([]byte(`{"event":"message","stanza_ids":[{"id":"1","by":"x"}],"t":-1}`))
	f.Add([]byte(`{"event":""}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseEvent(line)
		if err != nil {
			if !errors.Is(err, ErrNotEvent) {
				t.Fatalf("error %v does not wrap ErrNotEvent", err)
			}
			return
		}
		if ev.Kind == "" || ev.Raw != string(line) {
			t.Fatalf("ParseEvent(%q) = %+v", line, ev)
		}
	})
}

func TestOptionsArgs(t *testing.T) {
	base := Options{Addr: "127.0.0.1:5222", JID: "bob@localhost", Password: "pw"}
	with := func(f func(*Options)) Options { o := base; f(&o); return o }
	for _, tc := range []struct {
		name    string
		kind    Kind
		opts    Options
		want    []string // arguments that must appear, in order, as pairs
		absent  []string
		wantErr string
	}{
		{name: "defaults", kind: Slixmpp, opts: base,
			want:   []string{"--jid", "bob@localhost", "--host", "127.0.0.1", "--port", "5222", "--mark-delay", "0", "--timeout", "30"},
			absent: []string{"--room", "--require-markable", "pw"}},
		{name: "delay", kind: Aioxmpp, opts: with(func(o *Options) { o.MarkDelay = 1500 * time.Millisecond }),
			want: []string{"--mark-delay", "1.5"}},
		{name: "never", kind: Aioxmpp, opts: with(func(o *Options) { o.MarkDelay = -time.Nanosecond }),
			want: []string{"--mark-delay", "never"}},
		{name: "room", kind: Slixmpp, opts: with(func(o *Options) { o.Room, o.RoomMarkers, o.RequireMarkable = "r@muc", true, true }),
			want: []string{"--room", "r@muc", "--nick", "slixmpp", "--room-markers", "--require-markable"}},
		{name: "debug and timeout", kind: Slixmpp, opts: with(func(o *Options) { o.Debug, o.ReadyTimeout = true, 2*time.Second }),
			want: []string{"--timeout", "2", "--log-level", "DEBUG"}},
		{name: "room on aioxmpp", kind: Aioxmpp, opts: with(func(o *Options) { o.Room = "r@muc" }), wantErr: "slixmpp peers only"},
		{name: "room markers without room", kind: Slixmpp, opts: with(func(o *Options) { o.RoomMarkers = true }), wantErr: "needs Options.Room"},
		{name: "bad addr", kind: Slixmpp, opts: with(func(o *Options) { o.Addr = "localhost" }), wantErr: "Options.Addr"},
		{name: "no password", kind: Slixmpp, opts: with(func(o *Options) { o.Password = "" }), wantErr: "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, env, err := tc.opts.args(tc.kind)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(env, []string{"XT_PASSWORD=" + tc.opts.Password}) {
				t.Errorf("env = %q", env)
			}
			joined := " " + strings.Join(args, " ") + " "
			for i := 0; i < len(tc.want); {
				// Flags alone or flag-value pairs, each contiguous.
				n := 1
				if i+1 < len(tc.want) && !strings.HasPrefix(tc.want[i+1], "--") {
					n = 2
				}
				if part := " " + strings.Join(tc.want[i:i+n], " ") + " "; !strings.Contains(joined, part) {
					t.Errorf("args %q lack %q", args, part)
				}
				i += n
			}
			for _, a := range tc.absent {
				if slices.Contains(args, a) {
					t.Errorf("args %q contain %q", args, a)
				}
			}
		})
	}
}

func TestDecodeBenchResult(t *testing.T) {
	line := `{"event":"result","implementation":"aioxmpp 0.13.3","python":"3.11.2","count":3,"complete":false,"sm":true,` +
		`"to_server_count":3,"to_server_s":0.5,"to_server_latency_p50_s":0.25,"to_server_latency_p99_s":0.5,` +
		`"to_recipient_count":2,"to_recipient_s":null,"to_recipient_latency_p50_s":0.3,"to_recipient_latency_p99_s":0.4,` +
		`"seen_count":0,"seen_s":null,"seen_latency_p50_s":null,"seen_latency_p99_s":null,` +
		`"failed_count":1,"failed_states":["ERROR"],"markers_unmatched":2,"wall_s":1.25,"cpu_s":0.125,"cpu_total_s":0.75,` +
		`"peak_rss_bytes":1048576,"error":"timeout after 1s"}`
	got, err := decodeBenchResult([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := BenchResult{
		Implementation: "aioxmpp 0.13.3", Python: "3.11.2", Count: 3, SM: true,
		ToServer:    Milestone{All: 500 * time.Millisecond, Count: 3, P50: 250 * time.Millisecond, P99: 500 * time.Millisecond},
		ToRecipient: Milestone{Count: 2, P50: 300 * time.Millisecond, P99: 400 * time.Millisecond, Incomplete: true},
		Seen:        Milestone{Incomplete: true},
		Failed:      1, FailedStates: []string{"ERROR"}, MarkersUnmatched: 2,
		Wall: 1250 * time.Millisecond, CPU: 125 * time.Millisecond, CPUTotal: 750 * time.Millisecond,
		PeakRSS: 1 << 20, Error: "timeout after 1s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := decodeBenchResult([]byte(`{"count":"x"}`)); err == nil {
		t.Error("bad result decoded")
	}
}

func TestAvailableUnknownKind(t *testing.T) {
	if err := Available("pidgin"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Available(pidgin) = %v, want ErrUnavailable", err)
	}
}

// TestScriptsCompile byte-compiles every embedded script with the peers'
// interpreter.
func TestScriptsCompile(t *testing.T) {
	if _, err := os.Stat(Python); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir, err := writeScripts()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	files, _ := filepath.Glob(filepath.Join(dir, "*.py"))
	if len(files) < 5 {
		t.Fatalf("only %d scripts written: %q", len(files), files)
	}
	// Compile in memory: nothing is written next to the scripts.
	prog := "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')\n"
	out, err := exec.Command(Python, append([]string{"-c", prog}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestLaunchRefused checks that a peer that cannot connect reports an error
// quickly instead of hanging until the ready timeout.
func TestLaunchRefused(t *testing.T) {
	for _, kind := range []Kind{Slixmpp, Aioxmpp} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			requirePeer(t, kind)
			// A port that was free a moment ago: nothing listens there.
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			p, err := Launch(ctx, kind, Options{Addr: addr, JID: "nobody@localhost", Password: "x", ReadyTimeout: 15 * time.Second})
			if err == nil {
				p.Stop()
				t.Fatal("Launch succeeded without a server")
			}
			if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "nobody@localhost") {
				t.Errorf("Launch: %v", err)
			}
			t.Logf("%s: %.200s", kind, err)
		})
	}
}
