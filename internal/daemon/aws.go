package daemon

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/logging"
	smithymiddleware "github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// Identity is who this instance is.
type Identity struct {
	InstanceID string
	Region     string
}

// newIMDS returns an IMDSv2-only client: without a token there is no
// fallback to IMDSv1. It is enabled explicitly: AWS_EC2_METADATA_DISABLED
// keeps the SDK's credential chain away from IMDS, but the daemon asks it
// only for what the configuration leaves out.
func newIMDS(cfg config.Config) *imds.Client {
	return imds.New(imds.Options{
		Endpoint:          cfg.AWS.IMDSEndpoint,
		EnableFallback:    aws.FalseTernary,
		ClientEnableState: imds.ClientEnabled,
	})
}

// resolveIdentity fills what the config leaves out from instance metadata,
// retrying with backoff until it succeeds or ctx ends.
func resolveIdentity(ctx context.Context, cfg config.Config, log *zap.Logger, waiting func(reason string)) (Identity, error) {
	id := Identity{InstanceID: cfg.AWS.InstanceID, Region: cfg.AWS.Region}
	client := newIMDS(cfg)
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		err := fillFromIMDS(ctx, client, &id)
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return id, ctx.Err()
		}
		waiting("instance metadata: " + err.Error())
		log.Warn("cannot read instance metadata (IMDSv2); retrying", zap.Error(err), zap.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return id, ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// Identify resolves the identity once, without retrying: for preflight
// checks.
func Identify(ctx context.Context, cfg config.Config) (Identity, error) {
	id := Identity{InstanceID: cfg.AWS.InstanceID, Region: cfg.AWS.Region}
	err := fillFromIMDS(ctx, newIMDS(cfg), &id)
	return id, err
}

// fillFromIMDS reads from c what id lacks; it asks nothing when id is
// complete.
func fillFromIMDS(ctx context.Context, c *imds.Client, id *Identity) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if id.InstanceID == "" {
		out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: "instance-id"})
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(out.Content, 256))
			out.Content.Close()
		}
		if err != nil {
			return fmt.Errorf("read instance-id: %w", err)
		}
		id.InstanceID = strings.TrimSpace(string(b))
	}
	if id.Region == "" {
		out, err := c.GetRegion(ctx, &imds.GetRegionInput{})
		if err != nil {
			return fmt.Errorf("read region: %w", err)
		}
		id.Region = out.Region
	}
	return nil
}

// TrinoClient builds the worker client from the configuration.
func TrinoClient(cfg config.Config) (*trinoadmin.Client, error) {
	password, err := cfg.TrinoPassword()
	if err != nil {
		return nil, err
	}
	c, err := trinoadmin.New(trinoadmin.Options{
		URL: cfg.Trino.URL, User: cfg.Trino.User, Password: password, CAFile: cfg.Trino.CAFile,
		InsecureSkipVerify: !cfg.Trino.TLSVerify, Timeout: cfg.Trino.RequestTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("trino client: %w", err)
	}
	return c, nil
}

// Clients builds the SQS and Auto Scaling clients as the daemon uses them:
// the SDK's standard retryer with the configured attempts, every call
// counted in metrics.
func Clients(ctx context.Context, cfg config.Config, region string, m *metrics.Metrics, log *zap.Logger) (*sqs.Client, *autoscaling.Client, error) {
	sdkLog := log.With(zap.String("component", "aws-sdk"))
	opts := []func(*awsconfig.LoadOptions) error{
		// The instance role's credentials come from IMDS too: IMDSv2 only,
		// never a silent fallback to IMDSv1.
		awsconfig.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) { o.Client = newIMDS(cfg) }),
		awsconfig.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			sdkLog.Warn(fmt.Sprintf(format, v...), zap.String("classification", string(c)))
		})),
		awsconfig.WithRegion(region),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.AWS.MaxAttempts
				o.MaxBackoff = 5 * time.Second
			})
		}),
		awsconfig.WithAPIOptions([]func(*smithymiddleware.Stack) error{m.AWSMiddleware()}),
	}
	if cfg.AWS.IMDSEndpoint != "" {
		opts = append(opts, awsconfig.WithEC2IMDSEndpoint(cfg.AWS.IMDSEndpoint))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("load aws config: %w", err)
	}
	sq := sqs.NewFromConfig(ac, func(o *sqs.Options) {
		if cfg.AWS.SQSEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.AWS.SQSEndpoint)
		}
	})
	as := autoscaling.NewFromConfig(ac, func(o *autoscaling.Options) {
		if cfg.AWS.AutoScalingEP != "" {
			o.BaseEndpoint = aws.String(cfg.AWS.AutoScalingEP)
		}
	})
	return sq, as, nil
}
