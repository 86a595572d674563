package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Dist summarises a sample of durations in seconds. Percentiles are
// nearest-rank: with 20 samples p95 is the 19th and p99 the largest.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_s"`
	P50  float64 `json:"p50_s"`
	P95  float64 `json:"p95_s"`
	P99  float64 `json:"p99_s"`
	Max  float64 `json:"max_s"`
	Mean float64 `json:"mean_s"`
	// Censored counts samples that did not finish within the trial's time
	// limit; they are included as that limit, so percentiles that reach
	// them are lower bounds.
	Censored int `json:"censored,omitempty"`
}

// seconds converts a sample.
func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

// nearestRank returns the q-quantile of sorted xs by nearest rank.
func nearestRank(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	r := int(math.Ceil(q * float64(len(sorted))))
	r = max(1, min(r, len(sorted)))
	return sorted[r-1]
}

// Summarise builds a Dist.
func Summarise(xs []float64, censored int) Dist {
	s := slices.Clone(xs)
	slices.Sort(s)
	d := Dist{N: len(s), Censored: censored}
	if len(s) == 0 {
		return d
	}
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	d.Min, d.Max, d.Mean = s[0], s[len(s)-1], sum/float64(len(s))
	d.P50, d.P95, d.P99 = nearestRank(s, 0.50), nearestRank(s, 0.95), nearestRank(s, 0.99)
	return d
}

// IntDist summarises integer counts.
type IntDist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  int     `json:"p50"`
	P95  int     `json:"p95"`
	P99  int     `json:"p99"`
	Max  int     `json:"max"`
}

// SummariseInts builds an IntDist.
func SummariseInts(xs []int) IntDist {
	s := slices.Clone(xs)
	slices.Sort(s)
	d := IntDist{N: len(s)}
	if len(s) == 0 {
		return d
	}
	sum := 0
	for _, x := range s {
		sum += x
	}
	f := make([]float64, len(s))
	for i, x := range s {
		f[i] = float64(x)
	}
	d.Mean = float64(sum) / float64(len(s))
	d.P50, d.P95, d.P99 = int(nearestRank(f, 0.5)), int(nearestRank(f, 0.95)), int(nearestRank(f, 0.99))
	d.Max = s[len(s)-1]
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

// addCounts adds src's counts into *dst.
func addCounts[V int | int64](dst *map[string]V, src map[string]V) {
	if *dst == nil {
		*dst = map[string]V{}
	}
	for k, v := range src {
		(*dst)[k] += v
	}
}

// countsSince is after − before for the keys that grew.
func countsSince[V int | int64](before, after map[string]V) map[string]V {
	out := map[string]V{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// find returns the first x that matches.
func find[T any](xs []T, match func(T) bool) (T, bool) {
	for _, x := range xs {
		if match(x) {
			return x, true
		}
	}
	var zero T
	return zero, false
}

// parallel runs fn on every x, at most par at a time, and waits.
func parallel[T any](xs []T, par int, fn func(T)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for _, x := range xs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(x)
		}()
	}
	wg.Wait()
}
