package lifecycle_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// fakeIMDSProcessEnv makes TestFakeIMDSProcess serve a fake IMDS.
const fakeIMDSProcessEnv = "TESTPEERS_FAKE_IMDS_PROCESS"

// TestFakeIMDSProcess is not a test: run by benchmarks as a child process
// (with fakeIMDSProcessEnv set), it serves a fake IMDS on loopback, prints
// its URL and serves until its stdin closes. The server's CPU then does
// not count in the benchmark's. The fake is an on-demand instance; with
// fakeIMDSProcessEnv set to a value other than "-", a proxy in front of
// it serves that value as instance-life-cycle.
func TestFakeIMDSProcess(t *testing.T) {
	lifeCycle := os.Getenv(fakeIMDSProcessEnv)
	if lifeCycle == "" {
		t.Skip("helper process for the IMDS benchmarks")
	}
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: "i-0123456789abcdef0"})
	defer fake.Close()
	fake.SetTargetLifecycleState("InService")
	url := fake.URL()
	if lifeCycle != "-" {
		target, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		// Rewrite, unlike Director, adds no X-Forwarded-For, with which
		// IMDS refuses a token.
		proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/latest/meta-data/instance-life-cycle" && r.Header.Get("X-Aws-Ec2-Metadata-Token") != "" {
				_, _ = io.WriteString(w, lifeCycle)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		defer srv.Close()
		url = srv.URL
	}
	fmt.Println(url)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// fakeIMDSProcess starts TestFakeIMDSProcess and returns the fake's URL;
// lifeCycle is what it serves as instance-life-cycle ("-": nothing, 404).
func fakeIMDSProcess(b *testing.B, lifeCycle string) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFakeIMDSProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), fakeIMDSProcessEnv+"="+lifeCycle)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		b.Fatalf("fake IMDS process: %q, %v", line, err)
	}
	return strings.TrimSpace(line)
}

// cpuTime is this process's user+system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sdkReader reads through the SDK's IMDSv2 client (feature/ec2/imds, as
// the daemon's newIMDS builds it), for comparison.
type sdkReader struct{ c *imds.Client }

func (r sdkReader) Read(ctx context.Context, path string, dst []byte, limit int) ([]byte, error) {
	out, err := r.c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return dst, err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, int64(limit)+1))
	if err == nil && len(b) > limit {
		err = fmt.Errorf("body larger than %d bytes", limit)
	}
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// imdsClients are the clients the poll loop can use: the SDK's and the
// package's own.
func imdsClients(url string) []struct {
	name string
	api  lifecycle.IMDSAPI
} {
	return []struct {
		name string
		api  lifecycle.IMDSAPI
	}{
		{"sdk", sdkReader{imds.New(imds.Options{Endpoint: url, EnableFallback: aws.FalseTernary, ClientEnableState: imds.ClientEnabled})}},
		{"client", lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: url})},
	}
}

// BenchmarkIMDSPollCPU is one poll of the IMDS source, Spot notices on,
// against a fake IMDS in a child process, so that B/op, allocs/op and
// cpu-µs/op (this process's user+system time per poll, runtime and GC
// included) are the client's alone. The session token is fetched before
// the timer starts. A poll reads target-lifecycle-state and, on a Spot
// instance, spot/instance-action: 1 request on the fake, an on-demand
// instance (sdk, client), 2 where a proxy in front of it says spot
// (client-spot).
func BenchmarkIMDSPollCPU(b *testing.B) {
	url := fakeIMDSProcess(b, "-")
	clients := imdsClients(url)
	clients = append(clients, struct {
		name string
		api  lifecycle.IMDSAPI
	}{"client-spot", lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: fakeIMDSProcess(b, "spot")})})
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			clock := &pollClock{polls: make(chan struct{})}
			var failed atomic.Int64
			src := lifecycle.NewIMDSSource(c.api, lifecycle.IMDSOptions{
				InstanceID: "i-0123456789abcdef0", Interval: time.Second, Spot: true, Clock: clock,
				Observe: func(_ bool, err error) {
					if err != nil {
						failed.Add(1)
					}
				},
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = src.Run(ctx, make(chan lifecycle.Delivery), nil); close(done) }()
			<-clock.polls // the first poll, with the token
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				<-clock.polls
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			if n := failed.Load(); n > 0 {
				b.Errorf("%d polls failed", n)
			}
			cancel()
			go func() {
				for range clock.polls {
				}
			}()
			<-done
			close(clock.polls)
		})
	}
}

// BenchmarkIMDSRead is one metadata read (a 404, as
// spot/instance-action on an instance without a notice, and a 200, as
// target-lifecycle-state) by each client, the fake in a child process.
func BenchmarkIMDSRead(b *testing.B) {
	url := fakeIMDSProcess(b, "-")
	for _, c := range imdsClients(url) {
		for _, path := range []string{"autoscaling/target-lifecycle-state", "spot/instance-action"} {
			b.Run(c.name+"/"+path, func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				buf := make([]byte, 0, 4096)
				read := func() { _, _ = c.api.Read(ctx, path, buf, 4096) }
				read() // the token
				cpu0 := cpuTime(b)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					read()
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			})
		}
	}
}
