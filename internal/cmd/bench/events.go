package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// EventStats is what a mass scale-in cost on the shared queue and Auto
// Scaling, and what became of each message.
type EventStats struct {
	Messages int     `json:"messages"`
	WindowS  float64 `json:"window_s"` // first termination → every message off the queue (or the limit)
	// OpenPolls is the number of receives open at the fake when the
	// event started: the daemons a message could go to first.
	OpenPolls   int64            `json:"open_polls_at_start"`
	SQSRequests int64            `json:"sqs_requests"`
	SQSByOp     map[string]int64 `json:"sqs_requests_by_op"`
	ASGRequests int64            `json:"autoscaling_requests"`
	Counts      []float64        `json:"receive_counts"`
	MaxReceive  int              `json:"max_receive_count"`
	// DeadLettered counts messages the queue's redrive policy moved to
	// the dead-letter queue; Undeleted those still on the queue at the end.
	DeadLettered int `json:"dead_lettered"`
	Undeleted    int `json:"not_deleted"`
	// Delete requests by daemons other than the message's owner: while its
	// action was live (must never happen) or after it ended (the stale
	// clean-up).
	NonOwnerLive  int `json:"non_owner_deletes_of_live_actions"`
	NonOwnerEnded int `json:"non_owner_deletes_of_ended_actions"`
	// OwnerWaits: message sent → the first receive that handed it to its
	// owner, for each message its owner received.
	OwnerWaits    []float64 `json:"owner_waits_s"`
	OwnerReceived int       `json:"owners_received"`
}

// probe follows the traffic of one event from its start.
type probe struct {
	w                *World
	start            time.Time
	req0, asg0, del0 int
	ops0             map[string]int64
	open             int64
}

// startProbe snapshots the counters right before the event's terminations.
func (w *World) startProbe() probe {
	return probe{w: w, start: time.Now(), req0: int(w.Proxy.Requests()), ops0: w.Proxy.OpCounts(),
		asg0: len(w.ASG.Calls()), del0: len(w.Proxy.Deletes()), open: w.Proxy.Polling()}
}

// msgIDs are the messages the terminations put on the queue.
func msgIDs(terms []Termination) map[string]Termination {
	out := map[string]Termination{}
	for _, t := range terms {
		if t.MsgID != "" {
			out[t.MsgID] = t
		}
	}
	return out
}

// waitOffQueue waits until every message of terms was deleted or
// dead-lettered, at most limit.
func (w *World) waitOffQueue(ctx context.Context, terms []Termination, limit time.Duration) {
	ids := msgIDs(terms)
	for end := time.Now().Add(limit); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		left := 0
		for _, m := range w.SQS.Messages(w.QueueURL) {
			if _, ok := ids[m.ID]; ok && !m.Deleted && m.MovedTo == "" {
				left++
			}
		}
		if left == 0 {
			return
		}
	}
}

// finish accounts for the event of terms, from the probe's start until now.
func (p probe) finish(terms []Termination) EventStats {
	w := p.w
	owner := msgIDs(terms)
	s := EventStats{Messages: len(owner), WindowS: time.Since(p.start).Seconds(), OpenPolls: p.open,
		SQSRequests: w.Proxy.Requests() - int64(p.req0), SQSByOp: map[string]int64{}, ASGRequests: int64(len(w.ASG.Calls()) - p.asg0)}
	for op, v := range w.Proxy.OpCounts() {
		if d := v - p.ops0[op]; d > 0 {
			s.SQSByOp[op] = d
		}
	}
	for _, m := range w.SQS.Messages(w.QueueURL) {
		if _, ok := owner[m.ID]; !ok {
			continue
		}
		s.Counts = append(s.Counts, float64(m.ReceiveCount))
		s.MaxReceive = max(s.MaxReceive, m.ReceiveCount)
		switch {
		case m.MovedTo != "":
			s.DeadLettered++
		case !m.Deleted:
			s.Undeleted++
		}
	}
	for id, t := range owner {
		if at, ok := w.Proxy.OwnerReceivedAt(id); ok {
			s.OwnerReceived++
			s.OwnerWaits = append(s.OwnerWaits, at.Sub(t.T0).Seconds())
		}
	}
	ended := map[string]time.Time{} // token → when the action ended
	for _, a := range w.ASG.Actions() {
		switch a.State {
		case testpeers.AutoScalingActionCompleted:
			ended[a.Token] = a.CompletedAt
		case testpeers.AutoScalingActionExpired:
			ended[a.Token] = a.ExpiredAt
		}
	}
	for _, d := range w.Proxy.Deletes()[p.del0:] {
		t, ok := owner[d.MessageID]
		switch {
		case !ok || d.Daemon == t.Node.ID:
		case !ended[t.Token].IsZero() && !d.At.Before(ended[t.Token]):
			s.NonOwnerEnded++
		default:
			s.NonOwnerLive++
		}
	}
	return s
}

// removeLeftovers deletes the messages of terms still on the queue
// straight at the fake (not counted as any daemon's traffic), so that the
// next measurement starts from an empty queue. A daemon that receives one
// meanwhile replaces its handle, so it tries again, for at most 5 s.
func (w *World) removeLeftovers(ctx context.Context, terms []Termination) {
	ids := msgIDs(terms)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && ctx.Err() == nil; {
		var handles []string
		for _, m := range w.SQS.Messages(w.QueueURL) {
			if _, ok := ids[m.ID]; ok && !m.Deleted && m.MovedTo == "" && m.ReceiptHandle != "" {
				handles = append(handles, m.ReceiptHandle)
			}
		}
		if len(handles) == 0 {
			return
		}
		parallel(len(handles), 32, func(i int) { _ = w.deleteDirect(ctx, handles[i]) })
	}
}

// deleteDirect sends one DeleteMessage to the fake SQS itself.
func (w *World) deleteDirect(ctx context.Context, handle string) error {
	body, _ := json.Marshal(map[string]string{"QueueUrl": w.QueueURL, "ReceiptHandle": handle})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.SQS.URL()+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "AmazonSQS.DeleteMessage")
	resp, err := w.Proxy.client.Do(req)
	if err != nil {
		return fmt.Errorf("delete a leftover message: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
