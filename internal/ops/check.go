// Package ops holds the operator commands: `scaledownd check` (preflight
// for AMI bakers and on-call), `status` (ask the running daemon), and
// `drain` / `undrain` (maintenance without Auto Scaling).
package ops

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// Check is one preflight check's result.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Warn   bool   `json:"warning,omitempty"` // passed, but worth a look
	Detail string `json:"detail"`
}

// QueueAPI is the SQS call check makes.
type QueueAPI interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Deps are what the checks talk to. Identity is resolved by the caller
// (IMDS); a nil API skips the checks that need it with a failure.
type Deps struct {
	InstanceID, Region string
	IdentityErr        error
	Actions            *lifecycle.Actions
	Queue              QueueAPI
	Trino              *trinoadmin.Client
}

// RunChecks runs every preflight check in order.
func RunChecks(ctx context.Context, cfg config.Config, d Deps) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }

	if d.IdentityErr != nil {
		add(Check{Name: "identity", Detail: "instance metadata (IMDSv2): " + d.IdentityErr.Error()})
	} else {
		add(Check{Name: "identity", OK: true, Detail: fmt.Sprintf("instance %s in %s", d.InstanceID, d.Region)})
	}

	group := cfg.AWS.Group
	if d.Actions != nil && d.InstanceID != "" {
		m, err := d.Actions.MembershipOf(ctx, d.InstanceID)
		switch {
		case err != nil:
			add(Check{Name: "asg-membership", Detail: err.Error()})
		case m.Group == "":
			add(Check{Name: "asg-membership", Detail: "instance is in no Auto Scaling group: the daemon will stay idle"})
		case cfg.AWS.Group != "" && m.Group != cfg.AWS.Group:
			add(Check{Name: "asg-membership", Detail: fmt.Sprintf("instance is in %s, but aws.asg-name is %s", m.Group, cfg.AWS.Group)})
		default:
			group = m.Group
			add(Check{Name: "asg-membership", OK: true, Detail: fmt.Sprintf("%s (%s)", m.Group, m.State)})
		}
	}

	if d.Actions != nil && group != "" {
		add(hookCheck(ctx, cfg, d.Actions, group))
	}

	if cfg.AWS.QueueURL == "" {
		add(Check{Name: "queue", Detail: "aws.queue-url is not set: the daemon will stay idle"})
	} else if d.Queue != nil {
		maxSize := 0 // unknown
		if d.Actions != nil && group != "" {
			maxSize, _ = d.Actions.GroupMaxSize(ctx, group) // 0 on error
		}
		add(queueCheck(ctx, cfg, d.Queue, maxSize))
	}

	if c, ok := passwordCheck(cfg); ok {
		add(c)
	}
	if cfg.Web.Config.File != "" {
		add(webConfigCheck(cfg.Web.Config.File))
	}
	if d.Trino != nil {
		trino := trinoChecks(ctx, cfg, d.Trino)
		out = append(out, trino...)
		if cfg.Trino.CoordinatorURL != "" && trino[0].OK {
			add(coordinatorCheck(ctx, cfg, d.Trino))
		}
	}
	return out
}

func hookCheck(ctx context.Context, cfg config.Config, a *lifecycle.Actions, group string) Check {
	name := cfg.AWS.Hook
	if name == "" {
		return Check{Name: "lifecycle-hook", OK: true, Warn: true,
			Detail: "aws.hook-name is not set: every hook's messages for this instance are handled, and its timing is read per message"}
	}
	ht, err := a.HookTiming(ctx, group, name)
	if err != nil {
		return Check{Name: "lifecycle-hook", Detail: err.Error()}
	}
	limit := ht.GlobalTimeoutOf()
	detail := fmt.Sprintf("%s: HeartbeatTimeout %s, heartbeats every %s, longest wait %s", name, ht.HeartbeatTimeout, ht.HeartbeatTimeout/2, limit)
	if cfg.Lifecycle.MaxDrainTime > limit {
		return Check{Name: "lifecycle-hook", OK: true, Warn: true,
			Detail: detail + fmt.Sprintf("; lifecycle.max-drain-time %s exceeds it, so drains end at %s (raise HeartbeatTimeout to reach 48h)", cfg.Lifecycle.MaxDrainTime, limit)}
	}
	return Check{Name: "lifecycle-hook", OK: true, Detail: detail}
}

// redrivePolicy is the JSON of the queue's RedrivePolicy attribute.
type redrivePolicy struct {
	MaxReceiveCount json.Number `json:"maxReceiveCount"`
	DeadLetterARN   string      `json:"deadLetterTargetArn"`
}

// deadLetterFactor follows from the SQS source's bound in mode sqs (see
// lifecycle.SQSSource): one daemon receives another instance's message at
// most twice at once and then at most once per 10 s, so over T seconds a
// message is received at most N × (2 + T/10 s) times on a queue shared by
// N daemons. A factor of 5 lets an owner be deadLetterGrace late — a
// restart, a slow start — without a dead-letter queue taking its message.
const (
	deadLetterFactor = 5
	deadLetterGrace  = 30 * time.Second
)

func queueCheck(ctx context.Context, cfg config.Config, q QueueAPI, maxSize int) Check {
	ctx, cancel := context.WithTimeout(ctx, cfg.AWS.CallTimeout)
	defer cancel()
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(cfg.AWS.QueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn, sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return Check{Name: "queue", Detail: "queue not reachable: " + err.Error()}
	}
	detail := out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	raw := out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	var rp redrivePolicy
	if raw == "" || json.Unmarshal([]byte(raw), &rp) != nil {
		return Check{Name: "queue", OK: true, Detail: detail}
	}
	n, _ := rp.MaxReceiveCount.Int64()
	detail += fmt.Sprintf("; dead-letter queue after %d receives", n)
	switch {
	case cfg.AWS.Mode == "imds": // nothing more to check
	case cfg.AWS.Mode == "both":
		// Another instance's termination message is hidden longer after
		// each receive (lifecycle.ForeignHideCovers): the fleet's receives
		// of a message follow its age, not the number of daemons.
		covers := lifecycle.ForeignHideCovers(int(n))
		if covers >= cfg.Lifecycle.MaxDrainTime {
			return Check{Name: "queue", OK: true, Detail: detail + fmt.Sprintf(" (in mode both a message lasts %s before that)", covers)}
		}
		need := int(n)
		for lifecycle.ForeignHideCovers(need) < cfg.Lifecycle.MaxDrainTime {
			need++
		}
		return Check{Name: "queue", OK: true, Warn: true, Detail: detail + fmt.Sprintf(
			": in mode both every daemon hands another instance's termination message back hidden for a minute, doubling with "+
				"each receive up to 12h, so a message reaches %d receives after %s, less than lifecycle.max-drain-time %s. "+
				"A longer drain still ends as it should (metadata drives it) but its message lands in the dead-letter queue; "+
				"raise maxReceiveCount to at least %d", n, covers, cfg.Lifecycle.MaxDrainTime, need)}
	case maxSize == 0:
		return Check{Name: "queue", OK: true, Warn: true, Detail: detail +
			fmt.Sprintf(" (group MaxSize unknown: keep maxReceiveCount at least %d × MaxSize on a shared queue)", deadLetterFactor)}
	case n < int64(deadLetterFactor*maxSize):
		return Check{Name: "queue", OK: true, Warn: true, Detail: detail + fmt.Sprintf(
			" is below %d × the group's MaxSize %d = %d: every daemon on a shared queue receives another instance's message "+
				"up to twice at once and then once per 10 s, so a message whose owner is %s late (a restart) is received up to "+
				"%d × MaxSize times, and a dead-letter queue with fewer can take it from its owner. Raise maxReceiveCount or remove the redrive policy",
			deadLetterFactor, maxSize, deadLetterFactor*maxSize, deadLetterGrace, deadLetterFactor)}
	}
	return Check{Name: "queue", OK: true, Detail: detail}
}

// passwordCheck tells where the Trino password comes from, and warns when
// the file holding it can be read by users other than its owner: under
// DynamicUser=yes the daemon needs no such access (the unit's
// LoadCredential= hands it a private copy), so group or other read bits
// only widen who can read the secret. ok is false when no password is
// configured anywhere.
func passwordCheck(cfg config.Config) (Check, bool) {
	src, file := cfg.TrinoPasswordSource()
	if src == "" {
		return Check{}, false
	}
	if file == "" {
		return Check{Name: "trino-password", OK: true, Warn: true,
			Detail: "from trino.password (in the config file or environment); prefer " + config.CredentialFile + " (root:root 0600), which the unit passes as a systemd credential"}, true
	}
	fi, err := os.Stat(file)
	if err != nil {
		return Check{Name: "trino-password", Detail: fmt.Sprintf("%s: %v", src, err)}, true
	}
	if mode := fi.Mode().Perm(); mode&0o044 != 0 {
		return Check{Name: "trino-password", OK: true, Warn: true, Detail: fmt.Sprintf(
			"%s is readable by other users (mode %04o): chmod 0600 it (owner root); the unit's LoadCredential= gives the daemon its own copy", file, mode)}, true
	}
	return Check{Name: "trino-password", OK: true, Detail: fmt.Sprintf("from %s, readable by its owner only", src)}, true
}

// webConfigCheck loads the listener's web configuration as the daemon does
// at start-up (YAML, certificate and key, password hashes) and says what it
// turns on.
func webConfigCheck(file string) Check {
	if err := web.Validate(file); err != nil {
		return Check{Name: "web-config", Detail: fmt.Sprintf("web.config.file %s: %v: the daemon would not start", file, err)}
	}
	wc, err := readWebConfig(file)
	if err != nil {
		return Check{Name: "web-config", Detail: err.Error()}
	}
	detail := fmt.Sprintf("%s: TLS %s, basic auth for %d user(s)", file, map[bool]string{true: "on", false: "off"}[wc.tlsOn()], len(wc.Users))
	if !wc.tlsOn() && len(wc.Users) > 0 {
		return Check{Name: "web-config", OK: true, Warn: true, Detail: detail + "; without TLS the password travels in clear text"}
	}
	return Check{Name: "web-config", OK: true, Detail: detail}
}

func trinoChecks(ctx context.Context, cfg config.Config, c *trinoadmin.Client) []Check {
	ctx, cancel := context.WithTimeout(ctx, 3*cfg.Trino.RequestTimeout)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		return []Check{{Name: "trino", Detail: fmt.Sprintf("%s: %v", c.URL(), err)}}
	}
	if info.Coordinator {
		return []Check{{Name: "trino", Detail: fmt.Sprintf("%s is a coordinator (Trino %s): scaledownd belongs on workers", c.URL(), info.Version)}}
	}
	var stateErr error
	if info.State == "" { // /v1/info carries no state on 476 and earlier
		info.State, stateErr = c.State(ctx)
	}
	return []Check{{Name: "trino", OK: true, Detail: fmt.Sprintf("worker %s, Trino %s, state %s; drain path: %s",
		c.URL(), info.Version, cmp.Or(info.State, "unknown"), trinoadmin.PlannedPath(trinoadmin.Strategy(cfg.Trino.Strategy), info))},
		permissionCheck(ctx, c, cfg.Trino.User, info.State, stateErr)}
}

// permissionCheck asks the worker to move to state, the one trinoChecks read:
// a no-op for Trino, but it passes through the same authentication and access
// control as a real drain. 401/403 means the drain would be refused; a 400
// (older releases reject ACTIVE → ACTIVE) still proves the user got through.
func permissionCheck(ctx context.Context, c *trinoadmin.Client, user, state string, err error) Check {
	if err != nil {
		return Check{Name: "trino-permission", Detail: err.Error()}
	}
	if state != trinoadmin.StateActive {
		return Check{Name: "trino-permission", OK: true, Warn: true, Detail: fmt.Sprintf("worker is %s; not probing", state)}
	}
	err = c.SetState(ctx, state)
	var se *trinoadmin.StatusError
	switch {
	case err == nil, errors.As(err, &se) && se.Code == 400:
		return Check{Name: "trino-permission", OK: true, Detail: fmt.Sprintf("user %s may change the node state", user)}
	case errors.As(err, &se) && se.Forbidden():
		return Check{Name: "trino-permission", Detail: fmt.Sprintf("user %s may not change the node state (HTTP %d): allow it to write system information in the worker's access control", user, se.Code)}
	default:
		return Check{Name: "trino-permission", Detail: err.Error()}
	}
}

// coordinatorCheck asks the coordinator (trino.coordinator-url) how it sees
// this worker, as a launch does before it continues: it must answer, and
// list the worker's node id; a launch waits until it says active.
func coordinatorCheck(ctx context.Context, cfg config.Config, c *trinoadmin.Client) Check {
	ctx, cancel := context.WithTimeout(ctx, 4*cfg.Trino.RequestTimeout)
	defer cancel()
	co := c.Coordinator(cfg.Trino.CoordinatorURL)
	id, err := c.NodeID(ctx)
	if err != nil {
		return Check{Name: "trino-coordinator", Detail: fmt.Sprintf("cannot read this worker's node id: %v", err)}
	}
	state, err := co.NodeState(ctx, id)
	switch {
	case err != nil:
		return Check{Name: "trino-coordinator", Detail: fmt.Sprintf("coordinator %s: %v", cfg.Trino.CoordinatorURL, err)}
	case state == "":
		return Check{Name: "trino-coordinator", Detail: fmt.Sprintf("coordinator %s does not list node %s in system.runtime.nodes: "+
			"a launch would wait for it and be abandoned at lifecycle.launch-timeout (is the worker's discovery.uri this coordinator?)", co.URL(), id)}
	case state != trinoadmin.NodeActive:
		return Check{Name: "trino-coordinator", OK: true, Warn: true,
			Detail: fmt.Sprintf("coordinator %s lists node %s as %s; a launch waits until it is active", co.URL(), id, state)}
	}
	return Check{Name: "trino-coordinator", OK: true, Detail: fmt.Sprintf("coordinator %s lists node %s as active", co.URL(), id)}
}

// Failed reports whether any check failed.
func Failed(checks []Check) bool {
	return slices.ContainsFunc(checks, func(c Check) bool { return !c.OK })
}

// PrintChecks writes checks as a table, or as JSON.
func PrintChecks(w io.Writer, checks []Check, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			OK     bool    `json:"ok"`
			Checks []Check `json:"checks"`
			At     string  `json:"at"`
		}{!Failed(checks), checks, time.Now().UTC().Format(time.RFC3339)})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		mark := "ok"
		switch {
		case !c.OK:
			mark = "FAIL"
		case c.Warn:
			mark = "warn"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, strings.ReplaceAll(c.Detail, "\n", " "))
	}
	return tw.Flush()
}
