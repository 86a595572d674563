// Command bench measures scaledownd against the wire-level test peers and
// writes BENCHMARKS.md, bench/results.json and bench/p1.png. `make bench`
// runs it; -quick is a smoke run of a few seconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/testenv"
)

func main() {
	exp := flag.String("exp", "", "experiment")
	n := flag.Int("n", 10, "fleet size")
	mode := flag.String("mode", "sqs", "mode")
	trials := flag.Int("trials", 3, "trials")
	latency := flag.Duration("latency", 10*time.Millisecond, "latency")
	flag.Parse()
	hermetic()
	if *exp != "" {
		experiment(*n, *mode, *trials, *latency)
		return
	}
}

// hermetic gives the in-process daemons static credentials and keeps the
// SDK away from shared files, IMDS credentials and the machine's CA bundle.
func hermetic() {
	testenv.HermeticAWS()
	_ = os.Unsetenv("AWS_CA_BUNDLE")
}

func experiment(n int, mode string, trials int, latency time.Duration) {
	ctx := context.Background()
	w, err := NewWorld(latency, 300*time.Second)
	if err != nil {
		panic(err)
	}
	defer w.Close()
	f := NewFleet(w, mode, zap.NewNop())
	start := time.Now()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if err := f.Add(ctx, n, 32); err != nil {
		panic(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("started %d in %s; heap %d MiB sys %d MiB goroutines %d\n", n, time.Since(start), ms.HeapAlloc>>20, ms.Sys>>20, runtime.NumGoroutine())
	r0 := w.Proxy.Requests()
	cpu0 := cpuTime()
	time.Sleep(5 * time.Second)
	fmt.Printf("idle 5s: sqs req %d cpu %.2f cores\n", w.Proxy.Requests()-r0, (cpuTime()-cpu0).Seconds()/5)
	for i := 0; i < trials; i++ {
		node := f.Pick(1)[0]
		r0 := w.Proxy.Requests()
		cpu0 := cpuTime()
		t := f.Terminate(node)
		cctx, cancel := context.WithTimeout(ctx, 120*time.Second)
		at, err := WaitDraining(cctx, t, 2*time.Millisecond)
		if err != nil {
			fmt.Println(err)
			cancel()
			continue
		}
		c, err := f.WaitCompleted(cctx, t)
		fmt.Printf("trial %d: P1 %s P2 %s err %v", i, at.Sub(t.T0), c.CompleteAt.Sub(c.DrainedAt), err)
		err = f.WaitDeleted(cctx, t)
		cancel()
		rc := 0
		if t.MsgID != "" {
			rc = w.SQS.Receives(w.QueueURL, t.MsgID)
		}
		fmt.Printf(" receives %d sqs req %d cpu %.2fs del %v total %s\n", rc, w.Proxy.Requests()-r0, (cpuTime() - cpu0).Seconds(), err, time.Since(t.T0))
		f.Remove(node)
		if err := f.Add(ctx, 1, 1); err != nil {
			panic(err)
		}
	}
	f.Close()
	pprof.StopCPUProfile()
}

func init() {
	if p := os.Getenv("BENCH_CPUPROFILE"); p != "" {
		f, _ := os.Create(p)
		_ = pprof.StartCPUProfile(f)
		go func() { time.Sleep(60 * time.Second); pprof.StopCPUProfile(); f.Close() }()
	}
}
