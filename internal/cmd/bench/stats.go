package main

import (
	"math"
	"slices"
	"sync"
)

// Dist summarises a sample (seconds, or counts). Percentiles are
// nearest-rank: with 20 samples p95 is the 19th and p99 the largest.
type Dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	// Censored counts samples that hit the trial's time limit; they count
	// as that limit, so percentiles that reach them are lower bounds.
	Censored int `json:"censored,omitempty"`
}

// Summarise builds a Dist.
func Summarise(xs []float64, censored int) Dist {
	s := slices.Clone(xs)
	slices.Sort(s)
	d := Dist{N: len(s), Censored: censored}
	if len(s) == 0 {
		return d
	}
	rank := func(q float64) float64 { return s[max(1, min(int(math.Ceil(q*float64(len(s)))), len(s)))-1] }
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	d.Max, d.Mean = s[len(s)-1], sum/float64(len(s))
	d.P50, d.P95, d.P99 = rank(0.50), rank(0.95), rank(0.99)
	return d
}

// geometricQuantile is the q-quantile of the number of receives until a
// message reaches its owner when each receive goes to one of n waiting
// pollers at random: R ~ Geometric(1/n).
func geometricQuantile(n int, q float64) float64 {
	if n <= 1 {
		return 1
	}
	return math.Ceil(math.Log(1-q) / math.Log(1-1/float64(n)))
}

// parallel runs fn(0) … fn(n-1), at most par at a time, and waits.
func parallel(n, par int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// mib is bytes in MiB.
func mib(b int64) float64 { return float64(b) / (1 << 20) }
