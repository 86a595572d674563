package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// EventStats is what one scale-in event — one termination or many at once
// — cost on the shared queue and Auto Scaling, and who ended up with each
// message. P5 has one per mass scale-in; a P1 cell in mode both sums one
// per termination.
type EventStats struct {
	// Events is how many events are summed here; Messages how many
	// lifecycle messages they put on the queue.
	Events   int `json:"events,omitempty"`
	Messages int `json:"messages,omitempty"`
	// WindowS is how long the events were followed: from the first
	// termination until every message was deleted (or the limit).
	WindowS float64 `json:"window_s"`
	// OpenPolls is the number of receives open at the fake when each
	// event started, summed: the daemons a message could go to.
	OpenPolls   int64            `json:"open_polls_at_start,omitempty"`
	SQSRequests int64            `json:"sqs_requests"`
	SQSByOp     map[string]int64 `json:"sqs_requests_by_op"`
	ASGRequests int              `json:"autoscaling_requests"`
	ASGByOp     map[string]int   `json:"autoscaling_requests_by_op"`
	// Counts are the messages' receive counts at the end.
	Counts        []int   `json:"receive_count_samples,omitempty"`
	MaxReceive    int     `json:"max_receive_count"`
	ReceiveCounts IntDist `json:"receive_counts"`
	Over3         int     `json:"receive_count_over_3"`
	Over5         int     `json:"receive_count_over_5"`
	Over10        int     `json:"receive_count_over_10"`
	Undeleted     int     `json:"messages_not_deleted"`
	// UndeletedEnded are the undeleted messages whose action had ended:
	// nobody will act on them, only a stale clean-up removes them.
	UndeletedEnded int `json:"messages_not_deleted_action_ended"`
	// OwnerDeletes and StaleCleaned count messages by who deleted them:
	// their owner, or another daemon (once the action had ended: the stale
	// clean-up). Deletes and the NonOwner counts are delete requests:
	// several daemons that saw a message may each send one, and only the
	// one holding the current receipt handle takes effect.
	OwnerDeletes  int `json:"deletes_by_owner"`
	StaleCleaned  int `json:"messages_cleaned_up_as_stale"`
	Deletes       int `json:"deletes"`
	NonOwnerLive  int `json:"non_owner_deletes_of_live_actions"`
	NonOwnerEnded int `json:"non_owner_deletes_of_ended_actions"`
	Unattributed  int `json:"deletes_unattributed"`
	// OwnerWaits are, for each message its owner received, the time from
	// the message being sent to its first receive by the owner.
	OwnerWaits    []float64 `json:"owner_waits_s,omitempty"`
	OwnerWait     Dist      `json:"owner_wait"`
	OwnerReceived int       `json:"owners_received"`
	// AllOwnersS is, per event, the time from its first termination until
	// the last owner received its message (the largest over the events
	// summed); 0 when some owner never did (its message was deleted as
	// stale after its action ended, or was still circulating).
	AllOwnersS float64 `json:"all_owners_received_s,omitempty"`
}

// probe follows the traffic of one event from its start.
type probe struct {
	w     *World
	start time.Time
	req0  int64
	ops0  map[string]int64
	asg0  int
	del0  int
	open  int64
}

// startProbe snapshots the counters; call it right before the event's
// terminations.
func (w *World) startProbe() probe {
	return probe{w: w, start: time.Now(), req0: w.Proxy.Requests(), ops0: w.Proxy.OpCounts(),
		asg0: len(w.ASG.Calls()), del0: len(w.Proxy.Deletes()), open: w.Proxy.Polling()}
}

// waitOffQueue waits until every message of terms is deleted, at most
// limit; it reports whether they all were.
func (w *World) waitOffQueue(ctx context.Context, terms []Termination, limit time.Duration) bool {
	ids := map[string]bool{}
	for _, t := range terms {
		if t.MsgID != "" {
			ids[t.MsgID] = true
		}
	}
	end := time.Now().Add(limit)
	for {
		left := 0
		for _, m := range w.SQS.Messages(w.QueueURL) {
			if ids[m.ID] && !m.Deleted {
				left++
			}
		}
		if left == 0 {
			return true
		}
		if !time.Now().Before(end) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish accounts for the event of terms, from the probe's start until now.
func (p probe) finish(terms []Termination) EventStats {
	w := p.w
	s := EventStats{Events: 1, WindowS: time.Since(p.start).Seconds(), OpenPolls: p.open,
		SQSRequests: w.Proxy.Requests() - p.req0, SQSByOp: countsSince(p.ops0, w.Proxy.OpCounts()), ASGByOp: map[string]int{}}
	calls := w.ASG.Calls()
	for _, c := range calls[p.asg0:] {
		s.ASGByOp[c.Op]++
	}
	s.ASGRequests = len(calls) - p.asg0

	owner := map[string]Termination{} // message id → termination
	for _, t := range terms {
		if t.MsgID != "" {
			owner[t.MsgID] = t
		}
	}
	s.Messages = len(owner)
	deletedAt := map[string]time.Time{}
	for _, m := range w.SQS.Messages(w.QueueURL) {
		if _, ok := owner[m.ID]; !ok {
			continue
		}
		s.Counts = append(s.Counts, m.ReceiveCount)
		if m.Deleted {
			deletedAt[m.ID] = m.DeletedAt
		} else {
			s.Undeleted++
		}
	}
	var last time.Time
	for id, t := range owner {
		at, ok := w.Proxy.OwnerReceivedAt(id)
		if !ok {
			continue
		}
		s.OwnerReceived++
		s.OwnerWaits = append(s.OwnerWaits, at.Sub(t.T0).Seconds())
		if at.After(last) {
			last = at
		}
	}
	if s.Messages > 0 && s.OwnerReceived == s.Messages {
		s.AllOwnersS = last.Sub(p.start).Seconds()
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
	for id, t := range owner {
		if _, deleted := deletedAt[id]; !deleted && !ended[t.Token].IsZero() {
			s.UndeletedEnded++
		}
	}
	effective := map[string]deleteRec{} // message id → the delete that took effect
	for _, d := range w.Proxy.Deletes()[p.del0:] {
		t, ok := owner[d.MessageID]
		if !ok {
			s.Unattributed++
			continue
		}
		s.Deletes++
		switch {
		case d.Daemon == t.Node.ID:
		case !ended[t.Token].IsZero() && !d.At.Before(ended[t.Token]):
			s.NonOwnerEnded++
		default:
			s.NonOwnerLive++
		}
		// The last delete sent before the fake deleted the message is the
		// one that did it (the others carried outdated receipt handles).
		if at, ok := deletedAt[d.MessageID]; ok && !d.At.After(at) {
			if e, seen := effective[d.MessageID]; !seen || d.At.After(e.At) {
				effective[d.MessageID] = d
			}
		}
	}
	for id, d := range effective {
		if d.Daemon == owner[id].Node.ID {
			s.OwnerDeletes++
		} else {
			s.StaleCleaned++
		}
	}
	s.summarise()
	return s
}

// removeLeftovers deletes the messages of terms still on the queue, with
// their latest receipt handles, straight at the fake (not counted as any
// daemon's traffic), so that the next measurement starts from an empty
// queue. A daemon that receives a message meanwhile replaces its handle
// and the delete does nothing, so it tries again, for at most a few
// seconds. It reports how many messages were left to remove.
func (w *World) removeLeftovers(ctx context.Context, terms []Termination) int {
	ids := map[string]bool{}
	for _, t := range terms {
		if t.MsgID != "" {
			ids[t.MsgID] = true
		}
	}
	first := -1
	end := time.Now().Add(5 * time.Second)
	for ctx.Err() == nil {
		var handles []string
		for _, m := range w.SQS.Messages(w.QueueURL) {
			if ids[m.ID] && !m.Deleted && m.ReceiptHandle != "" {
				handles = append(handles, m.ReceiptHandle)
			}
		}
		if first < 0 {
			first = len(handles)
		}
		if len(handles) == 0 || time.Now().After(end) {
			break
		}
		parallel(handles, 32, func(h string) { _ = w.deleteDirect(ctx, h) })
	}
	return first
}

// deleteDirect sends one DeleteMessage to the fake SQS itself.
func (w *World) deleteDirect(ctx context.Context, handle string) error {
	body, err := json.Marshal(map[string]string{"QueueUrl": w.QueueURL, "ReceiptHandle": handle})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.SQS.URL()+"/", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("delete a leftover message: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "AmazonSQS.DeleteMessage")
	resp, err := w.Proxy.client.Do(req)
	if err != nil {
		return fmt.Errorf("delete a leftover message: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("delete a leftover message: %s", resp.Status)
	}
	return nil
}

// add sums another event into s.
func (s *EventStats) add(o EventStats) {
	switch {
	case s.Events == 0:
		s.AllOwnersS = o.AllOwnersS
	case s.AllOwnersS > 0 && o.AllOwnersS > 0:
		s.AllOwnersS = math.Max(s.AllOwnersS, o.AllOwnersS)
	default:
		s.AllOwnersS = 0
	}
	s.Events += o.Events
	s.Messages += o.Messages
	s.WindowS += o.WindowS
	s.OpenPolls += o.OpenPolls
	s.SQSRequests += o.SQSRequests
	s.ASGRequests += o.ASGRequests
	addCounts(&s.SQSByOp, o.SQSByOp)
	addCounts(&s.ASGByOp, o.ASGByOp)
	s.Counts = append(s.Counts, o.Counts...)
	s.OwnerWaits = append(s.OwnerWaits, o.OwnerWaits...)
	s.OwnerReceived += o.OwnerReceived
	s.Undeleted += o.Undeleted
	s.UndeletedEnded += o.UndeletedEnded
	s.Deletes += o.Deletes
	s.OwnerDeletes += o.OwnerDeletes
	s.StaleCleaned += o.StaleCleaned
	s.NonOwnerLive += o.NonOwnerLive
	s.NonOwnerEnded += o.NonOwnerEnded
	s.Unattributed += o.Unattributed
	s.summarise()
}

// summarise fills the distributions from the samples.
func (s *EventStats) summarise() {
	s.ReceiveCounts = SummariseInts(s.Counts)
	s.MaxReceive = s.ReceiveCounts.Max
	s.Over3, s.Over5, s.Over10 = 0, 0, 0
	for _, c := range s.Counts {
		if c > 3 {
			s.Over3++
		}
		if c > 5 {
			s.Over5++
		}
		if c > 10 {
			s.Over10++
		}
	}
	s.OwnerWait = Summarise(s.OwnerWaits, 0)
}
