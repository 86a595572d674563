package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// binOpts configure the 1-node runs of the real binary.
type binOpts struct {
	Conf         benchConfig
	Binary       string
	Dir          string
	Latency      time.Duration
	HBT          time.Duration
	Trials       int
	Stagger      time.Duration // a new 1-node world every Stagger
	MaxParallel  int
	TrialTimeout time.Duration
}

// binSettings is the configuration of one subprocess daemon: production
// defaults with c's mode, IMDS poll and queue pacing, pointed at the peers.
func binSettings(w *World, n *Node, c benchConfig, queueURL, stateDir string) map[string]string {
	s := map[string]string{
		"AWS_REGION":               benchRegion,
		"AWS_INSTANCE_ID":          n.ID,
		"AWS_QUEUE_URL":            queueURL,
		"AWS_MODE":                 c.Mode,
		"AWS_ASG_NAME":             benchGroup,
		"AWS_HOOK_NAME":            benchHook,
		"AWS_SQS_ENDPOINT":         w.SQS.URL(),
		"AWS_AUTOSCALING_ENDPOINT": w.ASG.URL(),
		"AWS_IMDS_POLL_INTERVAL":   c.IMDS.String(),
		"AWS_SQS_IDLE_INTERVAL":    c.SQSIdle.String(),
		"TRINO_URL":                n.Trino.URL(),
		"STATE_DIR":                stateDir,
	}
	if c.WaitTime > 0 {
		s["AWS_WAIT_TIME"] = c.WaitTime.String()
	}
	if n.IMDS != nil {
		s["AWS_IMDS_ENDPOINT"] = n.IMDS.URL()
	}
	return s
}

// runP1Binary measures the 1-node reaction with the real binary. Every
// trial is its own 1-node world (its own queue, instance, worker and
// metadata service), so trials may overlap without sharing anything but
// the machine.
func runP1Binary(ctx context.Context, o binOpts) (P1Cell, error) {
	mode := o.Conf.Mode
	cell := P1Cell{Config: o.Conf.Name, Mode: mode, N: 1, Runner: "binary", Overlapped: true, Planned: o.Trials}
	w, err := NewWorld(o.Latency, o.HBT, "")
	if err != nil {
		return cell, err
	}
	defer w.Close()
	start, cpu0 := time.Now(), cpuTime()
	mach0, own0 := machineBusy(), ownCPU()
	fz := &finisher{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	sem := make(chan struct{}, o.MaxParallel)
	for i := 0; i < o.Trials && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tr, err := oneBinaryTrial(ctx, w, mode, i, o, fz)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			cell.Trials = append(cell.Trials, tr)
		}()
		time.Sleep(o.Stagger)
	}
	wg.Wait()
	wall := time.Since(start)
	cell.WallS = wall.Seconds()
	cell.CPUCores = (cpuTime() - cpu0).Seconds() / wall.Seconds()
	cell.OtherCores = otherCores(mach0, own0, wall)
	cell.P2Samples = w.P2(fz.completions)
	cell.P2 = Summarise(cell.P2Samples, 0)
	cell.Errors = fz.errors
	cell.summarise()
	if len(cell.Trials) == 0 && firstErr != nil {
		return cell, firstErr
	}
	return cell, nil
}

func oneBinaryTrial(ctx context.Context, w *World, mode string, i int, o binOpts, fz *finisher) (P1Trial, error) {
	queue := w.SQS.CreateQueue(fmt.Sprintf("q-%s-%d", mode, i), testpeers.SQSQueueOptions{})
	n := &Node{ID: newInstanceID()}
	n.Trino = testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: randomGrace(), NodeID: n.ID})
	if mode != "sqs" {
		n.IMDS = testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: n.ID, Region: benchRegion})
		n.IMDS.SetTargetLifecycleState("InService")
	}
	defer n.closePeers()
	w.ASG.AddInstance(n.ID, benchGroup, "InService")
	logPath := filepath.Join(o.Dir, fmt.Sprintf("p1-%s-%d.log", o.Conf.Name, i))
	settings := binSettings(w, n, o.Conf, queue, filepath.Join(o.Dir, "state-"+n.ID))
	settings["LOG_LEVEL"] = "info" // the one line naming the source that started the drain
	p, err := startBinary(ctx, o.Binary, logPath, settings)
	if err != nil {
		return P1Trial{}, err
	}
	defer p.stop()
	// Let the first long poll open; in imds and both modes also land the
	// termination at a random point of the metadata poll cycle. A paced
	// daemon (mode both with an idle interval) long-polls at start-up and
	// then once per idle interval: wait until the start-up poll is over,
	// so the termination finds it as it is most of the time (not polling).
	settle := 150 * time.Millisecond
	if o.Conf.paced() {
		settle = o.Conf.longPoll() + time.Second
	}
	if mode != "sqs" {
		settle += time.Duration(rand.Int64N(int64(o.Conf.IMDS)))
	}
	time.Sleep(settle)

	t := w.Terminate(n, mode, queue)
	tctx, cancel := context.WithTimeout(ctx, o.TrialTimeout)
	defer cancel()
	tr := P1Trial{Node: n.ID}
	at, err := WaitDraining(tctx, t, 2*time.Millisecond)
	if err != nil {
		tr.Seconds, tr.Censored = o.TrialTimeout.Seconds(), true
	} else {
		tr.Seconds = at.Sub(t.T0).Seconds()
	}
	if t.MsgID != "" {
		tr.Receives = w.SQS.Receives(queue, t.MsgID)
	}
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	fz.add(w.WaitCompleted(fctx, t))
	_ = w.WaitDeleted(fctx, t)
	tr.Source = sourceFromLog(logPath)
	return tr, nil
}

// sourceFromLog reads which source started the drain from a daemon's JSON
// log.
func sourceFromLog(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg    string `json:"msg"`
			Source string `json:"source"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && strings.HasPrefix(rec.Msg, msgReceived) {
			return rec.Source
		}
	}
	return ""
}
