package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
)

// SQSAPI is the part of the SQS client the source uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Recorder receives what the SQS source observes, for metrics.
type Recorder interface {
	// MessageReceived counts a message by kind: own, foreign, test, malformed.
	MessageReceived(kind string)
	// StaleDeleted counts another instance's message deleted because its
	// action can no longer be completed, by reason.
	StaleDeleted(reason string)
	// Polled records the outcome of one ReceiveMessage call.
	Polled(ok bool)
}

// Message kinds as the source counts them.
const (
	MessageOwn       = "own"
	MessageForeign   = "foreign"
	MessageTest      = "test"
	MessageMalformed = "malformed"
)

// Filter decides which lifecycle actions are this daemon's.
type Filter struct {
	InstanceID string // this instance; required
	Group      string // expected Auto Scaling group; empty accepts any
	Hook       string // expected terminating hook; empty accepts any
	LaunchHook string // expected launching hook; empty accepts any
}

// Owns reports whether e is this daemon's to act on, and if not, why.
func (f Filter) Owns(e Event) (bool, string) {
	switch {
	case e.InstanceID != f.InstanceID:
		return false, "another instance"
	case f.Group != "" && e.Group != f.Group:
		return false, "another auto scaling group"
	case e.Transition == TransitionLaunching && f.LaunchHook != "" && e.Hook != f.LaunchHook,
		e.Transition != TransitionLaunching && f.Hook != "" && e.Hook != f.Hook:
		return false, "another lifecycle hook"
	}
	return true, ""
}

// Delivery is one of this instance's lifecycle actions, handed from a source
// to the supervisor. Msg is nil when the source has no message to
// acknowledge (IMDS).
type Delivery struct {
	Event Event
	Msg   *Message
}

// SQSOptions configure an SQSSource.
type SQSOptions struct {
	QueueURL string
	Filter   Filter
	// WaitTime is the long-poll wait, at most 20 s.
	WaitTime time.Duration
	// VisibilityTimeout is asked for on every receive; at least 30 s so a
	// message is not redelivered while it is being classified.
	VisibilityTimeout time.Duration
	// CallTimeout bounds every call but the long poll, which gets
	// WaitTime + CallTimeout.
	CallTimeout time.Duration
	// ErrorBackoff is the first pause after a failed receive; it doubles up
	// to MaxErrorBackoff.
	ErrorBackoff, MaxErrorBackoff time.Duration
	Logger                        *zap.Logger
	Recorder                      Recorder
	Clock                         Clock
	// DryRun logs what would be done and hands every message back at once
	// instead: nothing is deleted, nothing stays hidden.
	DryRun bool
	// Stale, if set, lets the source delete other instances' messages whose
	// action can no longer be completed (expired, instance gone, instance
	// no longer waiting), so they stop circulating on a shared queue.
	Stale StaleChecker
	// Pace, if set, is waited on between receives (mode both: see Pacer).
	// Nil polls continuously, but for the pause after a receive that
	// brought nothing new (see foreignPause).
	Pace Pace
}

// Pace paces the receives of an SQSSource; *Pacer is one.
type Pace interface {
	// Wait returns when the next receive may start: after at least
	// atLeast, and while polling is paced after the idle interval (or as
	// soon as polling turns continuous), or when ctx ends (with its
	// error).
	Wait(ctx context.Context, atLeast time.Duration) error
	// Paced reports whether polling is paced now (the next receive is an
	// idle one, with a short wait).
	Paced() bool
	// Delivered tells the pacer that this instance's own termination
	// message has been received: the queue is no longer urgent for it.
	Delivered()
	// MetadataAnswers reports whether this instance's metadata was read
	// and its last read succeeded: in mode both an instance's own
	// metadata is then its signal, and the queue only its fall-back.
	MetadataAnswers() bool
}

// receiveVisibility is how long a receive hides a message. It only has to
// cover classifying the batch and handing other instances' messages back,
// which takes milliseconds; this instance's own message is then hidden for
// VisibilityTimeout at once. Kept short so that a receive whose answer is
// lost — the daemon stopped or crashed, the connection broke — hides the
// messages it took from their owners for seconds, not a minute.
const receiveVisibility = 10 * time.Second

// How the source keeps from spinning on other instances' messages. A
// message handed back with visibility 0 is at once visible to every
// daemon again — its own daemon included, which a non-zero visibility
// would keep waiting — and the daemon that handed it back would take it
// back with its very next receive. So:
//
//   - The first time this daemon sees a message, it hands it back at once
//     (visibility 0): nobody's owner is slowed by it.
//   - A receive that brought nothing new — only messages this daemon has
//     seen before, none of them its own, fewer than a full batch — is
//     followed by a pause of foreignPause before the next receive. The
//     messages are handed back at once all the same, so they stay visible
//     for their owners, and this daemon stops competing for them (stops
//     listening) meanwhile, which is what keeps a message's receive count
//     low on a shared queue: its owner, which polls without pause, meets
//     fewer rivals.
//   - A message seen before, in a receive that also brought something new
//     or was a full batch (a busy queue, where the daemon does not pause),
//     is handed back hidden for foreignPause. SQS tends to return the
//     oldest messages first (moto always does): without this, a daemon
//     would meet the same ten messages in every receive and never reach
//     its own behind them.
//
// So one daemon receives the same foreign message at most twice in a row
// and then at most once per foreignPause, in every mode and phase: over T
// seconds, at most 2 + T/10 times. scaledownd check's dead-letter rule
// builds on that bound.
const foreignPause = 10 * time.Second

// In mode both, an instance learns of its own termination from its
// metadata within a poll interval; its message on the queue is a
// fall-back (for when its metadata cannot be read) and something to clean
// up. Handing another instance's termination message back at once there
// only lets the next daemon receive it, and on a shared queue during a
// mass scale-in every receive raises the message's receive count towards
// the dead-letter queue's maxReceiveCount. So while this daemon's own
// metadata answers, it hands another instance's termination message back
// hidden for foreignHide(ApproximateReceiveCount) — a minute after its
// first receive, doubling with each receive up to SQS's 12 h limit —
// which bounds the receives of a message by the whole fleet, not only by
// one daemon: its n-th receive comes 2^(n−1) − 1 minutes after its first
// at the earliest (ForeignHideCovers). Launch messages (metadata cannot
// tell a launch from service) and every message in mode sqs, or while
// this daemon's metadata fails, are handed back by the rules above.
const (
	foreignHideFirst = time.Minute
	foreignHideMax   = 12 * time.Hour
)

// foreignHide is the hand-back visibility of another instance's
// termination message in mode both at its receive-th receive.
func foreignHide(receive int) time.Duration {
	return doubling(foreignHideFirst, foreignHideMax, receive)
}

// doubling is first at the first receive, doubled at each further one, up
// to most.
func doubling(first, most time.Duration, receive int) time.Duration {
	d := first
	for i := 1; i < receive && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

// ForeignHideCovers is how long a message survives, under foreignHide,
// before its receive count reaches maxReceiveCount: the sum of the hides
// of its first maxReceiveCount − 1 receives. scaledownd check compares it
// with the longest drain.
func ForeignHideCovers(maxReceiveCount int) time.Duration {
	var total time.Duration
	for i := 1; i < maxReceiveCount; i++ {
		total += foreignHide(i)
	}
	return total
}

// maxBatch is the most messages one receive asks for (SQS's limit).
const maxBatch = 10

// pacedWait is the long-poll wait of a paced (idle) receive in mode both:
// short, so an idle daemon listens on the queue for about a second per
// idle interval instead of up to aws.wait-time, and rarely competes with
// an owner for its message.
const pacedWait = time.Second

// maxSightings bounds the memory of message ids this daemon has seen;
// sightingTTL forgets an id not seen for that long.
const (
	maxSightings = 20000
	sightingTTL  = 15 * time.Minute
)

// sighting is what the source remembers of one message id.
type sighting struct {
	n    int       // times received
	last time.Time // last receive
}

// SQSSource long-polls the lifecycle queue. It hands back other instances'
// messages at once, deletes test notifications, hands back malformed ones
// with a growing visibility timeout, and delivers this instance's actions.
type SQSSource struct {
	api  SQSAPI
	opts SQSOptions
	log  *zap.Logger

	sightings map[string]sighting // message id → sightings; only Run's goroutine
	stale     *staleFilter        // nil: never delete others' messages
}

// sight records a receive of message id at now and returns how often it
// was received before (0 the first time). The memory is bounded: ids
// unseen for sightingTTL are forgotten when it is full, and all of them if
// that is not enough.
func (s *SQSSource) sight(id string, now time.Time) (before int) {
	if len(s.sightings) >= maxSightings {
		maps.DeleteFunc(s.sightings, func(_ string, v sighting) bool { return now.Sub(v.last) >= sightingTTL })
		if len(s.sightings) >= maxSightings {
			s.sightings = map[string]sighting{}
		}
	}
	before = s.sightings[id].n
	s.sightings[id] = sighting{n: before + 1, last: now}
	return before
}

// NewSQSSource returns a source reading opts.QueueURL through api.
func NewSQSSource(api SQSAPI, opts SQSOptions) *SQSSource {
	if opts.WaitTime <= 0 || opts.WaitTime > 20*time.Second {
		opts.WaitTime = 20 * time.Second
	}
	if opts.VisibilityTimeout < 30*time.Second {
		opts.VisibilityTimeout = 30 * time.Second
	}
	opts.CallTimeout = positive(opts.CallTimeout, 10*time.Second)
	opts.ErrorBackoff = positive(opts.ErrorBackoff, time.Second)
	if opts.MaxErrorBackoff < opts.ErrorBackoff {
		opts.MaxErrorBackoff = 30 * time.Second
	}
	opts.Logger = cmp.Or(opts.Logger, zap.NewNop())
	opts.Recorder = cmp.Or[Recorder](opts.Recorder, nopRecorder{})
	opts.Clock = cmp.Or[Clock](opts.Clock, RealClock{})
	s := &SQSSource{api: api, opts: opts, log: opts.Logger.With(zap.String("source", "sqs")), sightings: map[string]sighting{}}
	if opts.Stale != nil {
		s.stale = newStaleFilter(opts.Stale, opts.Clock.Now)
	}
	return s
}

// Run polls until ctx ends, sending this instance's actions to out. Each
// loop iteration calls progress, so a caller can tell a stuck loop from a
// quiet queue. Run returns nil when ctx is cancelled.
func (s *SQSSource) Run(ctx context.Context, out chan<- Delivery, progress func()) error {
	backoff := s.opts.ErrorBackoff
	for {
		if progress != nil {
			progress()
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := s.opts.WaitTime
		if s.opts.Pace != nil && s.opts.Pace.Paced() {
			wait = min(wait, pacedWait)
		}
		msgs, err := s.receive(ctx, wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.opts.Recorder.Polled(false)
			s.log.Warn("receive from the lifecycle queue failed; backing off",
				zap.Error(err), zap.Duration("backoff", backoff))
			if sleep(ctx, s.opts.Clock, backoff) != nil {
				return nil
			}
			backoff = min(2*backoff, s.opts.MaxErrorBackoff)
			continue
		}
		backoff = s.opts.ErrorBackoff
		s.opts.Recorder.Polled(true)
		var handBack []foreignMessage
		var own []*Message
		now := s.opts.Clock.Now()
		news := false // anything but messages seen before
		for _, m := range msgs {
			d, ok, foreign, fresh := s.handle(ctx, m, now)
			news = news || fresh
			if foreign.msg != nil {
				handBack = append(handBack, foreign)
			}
			if ok {
				own = append(own, d.Msg)
				if s.opts.Pace != nil && d.Event.Transition != TransitionLaunching {
					s.opts.Pace.Delivered()
				}
				select {
				case out <- d:
				case <-ctx.Done():
					// Handed back even when stopping, so no owner waits
					// out the receive's visibility.
					s.releaseAll(context.WithoutCancel(ctx), handBack)
					return nil
				}
			}
		}
		// Owners wait for the hand-back: the messages due for a stale check
		// (old enough, within the rate limit) stay hidden while Auto Scaling
		// is asked — a message handed back first would be received by
		// another daemon, and a delete through this receipt handle would
		// then do nothing — and all others are handed back at once.
		quiet := len(msgs) > 0 && len(msgs) < maxBatch && !news
		check, release := s.sortForeign(handBack, quiet)
		s.releaseAll(ctx, release)
		s.keepOwn(ctx, own)
		s.releaseAll(ctx, s.deleteStale(ctx, check))
		var pause time.Duration
		if quiet {
			pause = foreignPause
			s.log.Debug("the receive brought only messages seen before; pausing before the next one",
				zap.Int("messages", len(msgs)), zap.Duration("pause", pause))
		}
		if s.opts.Pace != nil {
			if s.opts.Pace.Wait(ctx, pause) != nil {
				return nil
			}
		} else if sleep(ctx, s.opts.Clock, pause) != nil {
			return nil
		}
	}
}

// sortForeign sets the hand-back visibility of other instances' messages
// and splits them into those to check for staleness now and those to hand
// back at once. Unless the receive was quiet, the messages seen before are
// hidden for foreignPause: a daemon that keeps receiving because the queue
// keeps bringing new messages does not take them back meanwhile. In mode
// both, while this instance's metadata answers, other instances'
// termination messages are hidden for foreignHide.
func (s *SQSSource) sortForeign(msgs []foreignMessage, quiet bool) (check, release []foreignMessage) {
	terminations := s.opts.Pace != nil && s.opts.Pace.MetadataAnswers()
	for _, f := range msgs {
		other := f.event.InstanceID != s.opts.Filter.InstanceID
		if f.seenBefore && !quiet {
			f.vis = foreignPause
		}
		if terminations && other && f.event.Transition != TransitionLaunching {
			f.vis = max(f.vis, foreignHide(f.msg.ReceiveCount))
		}
		// This instance's messages for another group or hook are never
		// stale to us.
		if s.stale != nil && other && s.stale.candidate(f.msg.ID, f.event) {
			check = append(check, f)
		} else {
			release = append(release, f)
		}
	}
	return check, release
}

// foreignMessage is another instance's message, to be handed back, with
// its event for the stale check.
type foreignMessage struct {
	msg        *Message
	event      Event
	seenBefore bool          // this daemon received the message before
	vis        time.Duration // hand-back visibility; 0: at once
}

// keepOwn hides this instance's messages for the full visibility timeout;
// the receive hid them only for receiveVisibility. The job's heartbeats
// extend them from then on.
func (s *SQSSource) keepOwn(ctx context.Context, own []*Message) {
	for _, m := range own {
		if err := m.Extend(ctx, s.opts.VisibilityTimeout); err != nil && ctx.Err() == nil {
			// Also the case when the action was already finished and the
			// message deleted a moment ago.
			s.log.Debug("could not extend the visibility of this instance's message; it may be received again, which is harmless",
				zap.String("message_id", m.ID), zap.Error(err))
		}
	}
}

// deleteStale deletes the messages whose action can no longer be completed
// by anyone and returns the others, to be handed back.
func (s *SQSSource) deleteStale(ctx context.Context, msgs []foreignMessage) (live []foreignMessage) {
	for _, f := range msgs {
		reason := s.stale.reason(ctx, f.event)
		if reason == "" {
			live = append(live, f)
			continue
		}
		e := f.event
		log := s.log.With(zap.String("message_id", f.msg.ID), zap.Int("receive_count", f.msg.ReceiveCount))
		log.Info("deleting another instance's lifecycle message whose action can no longer be completed",
			zap.String("reason", reason), zap.String("for_instance", e.InstanceID), zap.String("asg", e.Group),
			zap.String("hook", e.Hook), zap.Time("action_started", e.Time))
		if err := f.msg.Delete(ctx); err != nil {
			log.Warn("could not delete a stale message", zap.Error(err))
			live = append(live, f)
			continue
		}
		s.opts.Recorder.StaleDeleted(reason)
	}
	return live
}

func (s *SQSSource) receive(ctx context.Context, wait time.Duration) ([]types.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+s.opts.CallTimeout)
	defer cancel()
	out, err := s.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(s.opts.QueueURL),
		MaxNumberOfMessages: maxBatch,
		// Both are int32 fields the SDK omits when zero: they are set
		// explicitly so neither the queue's 0 s wait nor its default
		// visibility applies.
		WaitTimeSeconds:             int32(wait / time.Second),
		VisibilityTimeout:           int32(receiveVisibility / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		return nil, fmt.Errorf("receive message: %w", err)
	}
	return out.Messages, nil
}

// handle classifies one message and deals with everything that is not a
// delivery. It never deletes a message it cannot prove is a test
// notification or this instance's completed action. fresh reports
// whether the message is news to this daemon: its own, a test
// notification, or one it has not received before.
func (s *SQSSource) handle(ctx context.Context, m types.Message, now time.Time) (d Delivery, ok bool, handBack foreignMessage, fresh bool) {
	msg := &Message{
		src:          s,
		ID:           aws.ToString(m.MessageId),
		handle:       aws.ToString(m.ReceiptHandle),
		ReceiveCount: receiveCount(m),
		hiddenUntil:  now.Add(receiveVisibility),
	}
	body := []byte(aws.ToString(m.Body))
	log := s.log.With(zap.String("message_id", msg.ID), zap.Int("receive_count", msg.ReceiveCount))
	before := s.sight(msg.ID, now)

	e, kind, err := Classify(body)
	if s.opts.DryRun {
		// Receiving hid the message: hand it straight back the first time,
		// and a minute later on repeats, so a dry run neither keeps messages
		// from the fleet nor spins on them.
		vis := time.Duration(0)
		if before > 0 {
			vis = time.Minute
		}
		defer func() {
			if err := msg.Extend(ctx, vis); err != nil {
				log.Warn("dry run: could not hand the message back", zap.Error(err))
			}
		}()
	}
	switch kind {
	case KindTest:
		s.opts.Recorder.MessageReceived(MessageTest)
		log.Info("deleting Auto Scaling test notification", zap.String("asg", e.Group), zap.Bool("dry_run", s.opts.DryRun))
		if !s.opts.DryRun {
			if err := msg.Delete(ctx); err != nil {
				log.Warn("could not delete test notification", zap.Error(err))
			}
		}
		return Delivery{}, false, foreignMessage{}, true
	case KindMalformed:
		s.opts.Recorder.MessageReceived(MessageMalformed)
		vis := backoffVisibility(msg.ReceiveCount)
		log.Warn("message is not a lifecycle action scaledownd understands; leaving it on the queue",
			zap.Error(err), zap.String("excerpt", Excerpt(body, 160)), zap.Duration("visible_again_in", vis))
		if !s.opts.DryRun {
			if err := msg.Extend(ctx, vis); err != nil {
				log.Warn("could not set visibility of a malformed message", zap.Error(err))
			}
		}
		return Delivery{}, false, foreignMessage{}, before == 0
	}

	if ok, why := s.opts.Filter.Owns(e); !ok {
		s.opts.Recorder.MessageReceived(MessageForeign)
		log.Debug("handing back a lifecycle message that is not ours",
			zap.String("reason", why), zap.String("for_instance", e.InstanceID), zap.String("asg", e.Group), zap.String("hook", e.Hook))
		if s.opts.DryRun {
			return Delivery{}, false, foreignMessage{}, before == 0
		}
		// Handed back with the others of this receive, then checked for
		// staleness.
		return Delivery{}, false, foreignMessage{msg: msg, event: e, seenBefore: before > 0}, before == 0
	}
	s.opts.Recorder.MessageReceived(MessageOwn)
	e.Source = "sqs"
	e.ReceivedAt = now
	return Delivery{Event: e, Msg: msg}, true, foreignMessage{}, true
}

// releaseAll hands other instances' messages back — at once, or hidden for
// their vis — ten per ChangeMessageVisibilityBatch call rather than one
// call each. Entries the batch call could not change are retried one by
// one.
func (s *SQSSource) releaseAll(ctx context.Context, foreign []foreignMessage) {
	for len(foreign) > 0 {
		n := min(len(foreign), 10)
		batch := foreign[:n]
		foreign = foreign[n:]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, n)
		for i, f := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(f.msg.ReceiptHandle()), VisibilityTimeout: int32(f.vis / time.Second),
			}
		}
		cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		out, err := s.api.ChangeMessageVisibilityBatch(cctx, &sqs.ChangeMessageVisibilityBatchInput{
			QueueUrl: aws.String(s.opts.QueueURL), Entries: entries,
		})
		cancel()
		retry := batch
		if err != nil {
			s.log.Warn("could not hand back other instances' messages in a batch; trying one by one", zap.Error(err))
		} else {
			retry = nil
			for _, f := range out.Failed {
				if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < n {
					retry = append(retry, batch[i])
				}
			}
		}
		for _, f := range retry {
			if err := f.msg.Extend(ctx, f.vis); err != nil {
				s.log.Warn("could not hand back a foreign message", zap.String("message_id", f.msg.ID), zap.Error(err))
			}
		}
	}
}

func receiveCount(m types.Message) int {
	n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	return n
}

// backoffVisibility is how long a message nobody can act on stays hidden:
// 30 s doubling with each receive, up to 15 minutes, so it neither spins nor
// vanishes.
func backoffVisibility(receives int) time.Duration {
	return doubling(30*time.Second, 15*time.Minute, receives)
}

// Message is an SQS message that carried one of this instance's actions.
// It is acknowledged (deleted) only after the action is completed.
type Message struct {
	src          *SQSSource
	ID           string
	ReceiveCount int

	mu          sync.Mutex
	handle      string
	hiddenUntil time.Time // the end of the last visibility this daemon set; zero if unknown
}

// Delete removes the message from the queue.
func (m *Message) Delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.src.opts.CallTimeout)
	defer cancel()
	_, err := m.src.api.DeleteMessage(ctx, &sqs.DeleteMessageInput{
		QueueUrl:      aws.String(m.src.opts.QueueURL),
		ReceiptHandle: aws.String(m.ReceiptHandle()),
	})
	var gone *types.ReceiptHandleIsInvalid
	if err == nil || errors.As(err, &gone) { // gone: already deleted through a newer handle
		return nil
	}
	return fmt.Errorf("delete message %s: %w", m.ID, err)
}

// deleteRetryBackoff is the first pause between attempts of
// DeleteRetrying; it doubles up to maxDeleteRetryBackoff.
const (
	deleteRetryBackoff    = time.Second
	maxDeleteRetryBackoff = 10 * time.Second
	// adoptedHandleWindow is how long DeleteRetrying tries a message
	// adopted from a previous run, whose visibility is unknown.
	adoptedHandleWindow = 30 * time.Second
)

// DeleteRetrying deletes the message, retrying failures with backoff (1 s
// doubling to 10 s) for as long as its receipt handle is known to be
// good: until the visibility this daemon last gave it ends. After that the
// message may be redelivered — to another daemon too — and the delete is
// left to whoever receives it (this instance's daemon recognises a
// finished action and deletes it). Failed attempts are logged, the first
// and then at most one per 30 s. It returns the last error, or ctx's.
func (m *Message) DeleteRetrying(ctx context.Context) error {
	c := m.src.opts.Clock
	m.mu.Lock()
	until := m.hiddenUntil
	m.mu.Unlock()
	if until.IsZero() {
		until = c.Now().Add(adoptedHandleWindow)
	}
	log := m.src.log.With(zap.String("message_id", m.ID))
	attempts, err := retrying(ctx, c, deleteRetryBackoff, maxDeleteRetryBackoff, until, func() error { return m.Delete(ctx) }, nil,
		func(err error, attempt int, retryIn time.Duration) {
			log.Warn("could not delete the lifecycle message; retrying while its receipt handle is good",
				zap.Error(err), zap.Int("failed_attempts", attempt), zap.Duration("retry_in", retryIn), zap.Time("visible_at", until))
		})
	switch {
	case err == nil && attempts > 1:
		log.Info("lifecycle message deleted after failed attempts", zap.Int("attempts", attempts))
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("%w (gave up after %d attempts: the message's visibility ends at %s)", err, attempts, until.Format(time.RFC3339))
	}
	return err
}

// Extend keeps the message hidden for d from now; 0 hands it back at once.
func (m *Message) Extend(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, m.src.opts.CallTimeout)
	defer cancel()
	_, err := m.src.api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(m.src.opts.QueueURL),
		ReceiptHandle:     aws.String(m.ReceiptHandle()),
		VisibilityTimeout: int32(d / time.Second),
	})
	if err != nil {
		return fmt.Errorf("change visibility of message %s to %s: %w", m.ID, d, err)
	}
	m.mu.Lock()
	m.hiddenUntil = m.src.opts.Clock.Now().Add(d)
	m.mu.Unlock()
	return nil
}

// Adopt rebuilds a message from what a previous run persisted, so a
// resumed action can still extend and delete it. A handle from before a
// restart may have expired; deleting through it then does nothing, and the
// redelivered message is recognised as a finished action and deleted.
func (s *SQSSource) Adopt(id, receiptHandle string, receiveCount int) *Message {
	return &Message{src: s, ID: id, handle: receiptHandle, ReceiveCount: receiveCount}
}

// ReceiptHandle is the newest receipt handle of the message.
func (m *Message) ReceiptHandle() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handle
}

// Supersede takes the newer receipt handle of a redelivery of the same
// message; only the latest handle reliably deletes it.
func (m *Message) Supersede(newer *Message) {
	if newer == nil || newer == m {
		return
	}
	newer.mu.Lock()
	h, until := newer.handle, newer.hiddenUntil
	newer.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handle, m.hiddenUntil = h, until
	m.ReceiveCount = max(m.ReceiveCount, newer.ReceiveCount)
}

type nopRecorder struct{}

func (nopRecorder) MessageReceived(string) {}
func (nopRecorder) StaleDeleted(string)    {}
func (nopRecorder) Polled(bool)            {}
