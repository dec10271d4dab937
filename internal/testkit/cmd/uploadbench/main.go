// Command uploadbench measures attach uploads against curl, in the same run,
// on Prosody 0.12 (mod_http_file_share) and ejabberd 23.01 (mod_http_upload)
// started by the test harness on loopback.
//
//	go run ./internal/testkit/cmd/uploadbench [-size MB] [-runs N] [-servers prosody,ejabberd]
//
// For each server it uploads the same file with `curl -T` (the baseline,
// given a slot asked for the same way) and with attach.Uploader.Upload,
// alternately, N times each, and reports the median throughput of each and
// their ratio. Then it uploads the file once more from a child process that
// reports its peak resident set size (VmHWM), which is the memory an upload
// of that size costs a program, runtime included.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/upload"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/attach"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		os.Exit(child(os.Args[2:]))
	}
	size := flag.Int("size", 200, "file size in MiB")
	runs := flag.Int("runs", 3, "uploads per tool and server")
	servers := flag.String("servers", "prosody,ejabberd", "servers to run")
	flag.Parse()
	if err := run(int64(*size)<<20, *runs, strings.Split(*servers, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "uploadbench:", err)
		os.Exit(1)
	}
}

func run(size int64, runs int, kinds []string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "uploadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "payload.bin")
	if err := makeFile(file, size); err != nil {
		return err
	}
	fmt.Printf("file: %d MiB; %d uploads per tool, alternating; median throughput\n\n", size>>20, runs)
	fmt.Println("| server | curl -T | attach | ratio | attach peak RSS (child) |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, kind := range kinds {
		srv, err := testserver.Launch(ctx, testserver.Kind(kind), testserver.Options{
			Accounts: []string{"alice"}, HTTPUpload: true, UploadLimit: size + 1<<20, NoMAM: true,
		})
		if err != nil {
			return err
		}
		line, err := measure(ctx, srv, file, size, runs)
		srv.Stop()
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		fmt.Printf("| %s | %s |\n", kind, line)
	}
	return nil
}

func makeFile(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	// Pseudo-random bytes, so that nothing on the way can compress them.
	buf := make([]byte, 1<<20)
	x := uint64(0x9E3779B97F4A7C15)
	for written := int64(0); written < size; written += int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			for k := range 8 {
				buf[i+k] = byte(x >> (8 * k))
			}
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), size-written)]); err != nil {
			return err
		}
	}
	return nil
}

func dial(ctx context.Context, srv *testserver.Server) (*xmpptrack.Client, error) {
	return xmpptrack.Dial(ctx, srv.JID("alice"), srv.Password("alice"), &xmpptrack.Config{Addr: srv.Addr(), TLSConfig: srv.TLSConfig()})
}

func measure(ctx context.Context, srv *testserver.Server, file string, size int64, runs int) (string, error) {
	c, err := dial(ctx, srv)
	if err != nil {
		return "", err
	}
	defer c.Close()
	u := attach.New(c, &attach.Config{AllowPlaintext: true})
	svc, err := u.Service(ctx)
	if err != nil {
		return "", err
	}
	var curlRates, ourRates []float64
	for i := range runs {
		// The baseline: a slot asked for with mellium, the bytes put by curl.
		s, err := c.Session(ctx)
		if err != nil {
			return "", err
		}
		// A context that never ends: see the attach package on why.
		slot, err := upload.GetSlot(context.Background(), upload.File{Name: fmt.Sprintf("curl%d.bin", i), Size: int(size), Type: "application/octet-stream"}, svc.JID, s)
		if err != nil {
			return "", fmt.Errorf("slot for curl: %w", err)
		}
		args := []string{"-sS", "-f", "-o", "/dev/null", "-T", file, "-H", "Content-Type: application/octet-stream"}
		for name, vals := range slot.Header {
			for _, v := range vals {
				args = append(args, "-H", name+": "+v)
			}
		}
		args = append(args, slot.PutURL.String())
		began := time.Now()
		if out, err := exec.Command("curl", args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("curl: %v: %s", err, out)
		}
		curlRates = append(curlRates, float64(size)/time.Since(began).Seconds())

		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		began = time.Now()
		_, err = u.Upload(ctx, attach.File{Name: fmt.Sprintf("attach%d.bin", i), Size: size, Body: f, ContentType: "application/octet-stream"})
		f.Close()
		if err != nil {
			return "", err
		}
		ourRates = append(ourRates, float64(size)/time.Since(began).Seconds())
	}
	rss, err := childRSS(srv, file, size)
	if err != nil {
		return "", err
	}
	cm, om := median(curlRates), median(ourRates)
	return fmt.Sprintf("%.1f MiB/s | %.1f MiB/s | %.2f | %.1f MiB", cm/(1<<20), om/(1<<20), om/cm, float64(rss)/(1<<20)), nil
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// childRSS uploads the file from a child process and returns its VmHWM.
func childRSS(srv *testserver.Server, file string, size int64) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self, "-child", srv.Addr(), srv.JID("alice").String(), file, fmt.Sprint(size))
	cmd.Env = append(os.Environ(), "XMPP_PASSWORD="+srv.Password("alice"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("child: %w", err)
	}
	var kb int64
	if _, err := fmt.Sscanf(string(out), "VmHWM %d", &kb); err != nil {
		return 0, fmt.Errorf("child said %q", out)
	}
	return kb << 10, nil
}

func child(args []string) int {
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "child: addr jid file size")
		return 2
	}
	var size int64
	fmt.Sscan(args[3], &size)
	ctx := context.Background()
	c, err := xmpptrack.Dial(ctx, jid.MustParse(args[1]), os.Getenv("XMPP_PASSWORD"), &xmpptrack.Config{Addr: args[0], AllowPlaintext: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer c.Close()
	f, err := os.Open(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer f.Close()
	u := attach.New(c, &attach.Config{AllowPlaintext: true})
	if _, err := u.Upload(ctx, attach.File{Name: "child.bin", Size: size, Body: io.Reader(f)}); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	hwm := procio.SelfStatus("VmHWM:")
	if hwm == 0 {
		fmt.Fprintln(os.Stderr, "child: no VmHWM in /proc/self/status")
		return 1
	}
	fmt.Printf("VmHWM %d\n", hwm>>10)
	return 0
}
