package testpeers

// moto's server (PyPI moto[server]) is an SQS and SNS implementation
// nobody on this project wrote: the daemon's SQS-side integration tests run
// against it as well as against the fake SQS above, so the fake is checked
// against a second reading of AWS's documentation. moto has no lifecycle
// heartbeats or completions, so the Auto Scaling side stays on the fake.
// docs/sqs-peers.md lists every difference found between the two.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// MotoVersion is the pinned moto release (PyPI moto[server]).
const MotoVersion = "5.2.5"

// MotoRegion is the region moto's server answers for by default.
const MotoRegion = "us-east-1"

// motoVenv is where the project's set-up installs moto, relative to the
// module root.
var motoVenv = filepath.Join("build", "tools", "moto", "venv")

// MotoBinary returns the path of moto's server: $TESTPEERS_MOTO, else
// build/tools/moto/venv/bin/moto_server under the module root, created
// there (python3 -m venv, pip install moto[server]==MotoVersion) if it is
// not there yet. The venv is built aside and renamed into place, as test
// packages running in parallel may build it at the same time; a venv's
// scripts name the interpreter of the place they were built in, so StartMoto
// runs the server with the venv's own python.
func MotoBinary() (string, error) {
	if p := os.Getenv("TESTPEERS_MOTO"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("TESTPEERS_MOTO=%s: %w", p, err)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	venv := filepath.Join(root, motoVenv)
	bin := filepath.Join(venv, "bin", "moto_server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	err = buildAside(venv, "", func(tmp string) error {
		for _, args := range [][]string{
			{"python3", "-m", "venv", tmp},
			{filepath.Join(tmp, "bin", "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "moto[server]==" + MotoVersion},
		} {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("install moto %s (%s): %v\n%s", MotoVersion, strings.Join(args, " "), err, out)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod that governs the working
// directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("no go.mod above the working directory (go env GOMOD: %q, %v)", gomod, err)
	}
	return filepath.Dir(gomod), nil
}

// Moto is a running moto server.
type Moto struct {
	*peerProcess
	sqs *sqs.Client
	seq int
	mu  sync.Mutex
}

// StartMoto runs `moto_server -H 127.0.0.1 -p PORT` on a free loopback port
// and waits until it answers.
func StartMoto() (*Moto, error) {
	bin, err := MotoBinary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"-H", "127.0.0.1", "-p", port}
	cmd := exec.Command(bin, args...)
	if py := filepath.Join(filepath.Dir(bin), "python"); fileExists(py) && fileExists(filepath.Join(filepath.Dir(bin), "..", "pyvenv.cfg")) {
		cmd = exec.Command(py, append([]string{bin}, args...)...)
	}
	// The test process's AWS settings stay out: moto runs botocore, which
	// fails on the empty AWS_PROFILE of testenv.HermeticAWS, for one.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	setParentDeathSignal(cmd)
	log := &cappedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	p, err := startPeerProcess("moto_server", cmd, port, "/moto-api/", 60*time.Second, log,
		func(status int) bool { return status == http.StatusOK })
	if err != nil {
		return nil, err
	}
	m := &Moto{peerProcess: p}
	m.sqs = sqs.New(sqs.Options{
		Region: MotoRegion, BaseEndpoint: aws.String(m.URL),
		// moto answers in the JSON protocol only to signed requests.
		Credentials: credentials.NewStaticCredentialsProvider("AKIATESTTESTTESTTEST", "test-secret-key", ""),
	})
	return m, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// SQS is an SDK client for the server, for setting up and inspecting
// queues.
func (m *Moto) SQS() *sqs.Client { return m.sqs }

var (
	sharedMotoOnce sync.Once
	sharedMoto     *Moto
	sharedMotoErr  error
)

// SharedMoto returns one moto server for the whole test binary, started by
// the first caller (each test makes its own queues). Stop it from TestMain
// with StopSharedMoto.
func SharedMoto(tb testing.TB) *Moto {
	tb.Helper()
	sharedMotoOnce.Do(func() { sharedMoto, sharedMotoErr = StartMoto() })
	if sharedMotoErr != nil {
		tb.Fatal(sharedMotoErr)
	}
	return sharedMoto
}

// StopSharedMoto stops the server SharedMoto started, if any.
func StopSharedMoto() {
	if sharedMoto != nil {
		sharedMoto.Close()
	}
}

// uniqueName returns a queue or topic name no other test of this process
// uses.
func (m *Moto) uniqueName(prefix string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), m.seq)
}

// MotoQueue is a queue on moto, with its dead-letter queue when it has a
// redrive policy.
type MotoQueue struct {
	m        *Moto
	URL, ARN string
	DLQ      *MotoQueue // nil without a redrive policy
}

// CreateQueue creates a queue named after prefix; with maxReceiveCount > 0
// it gets a dead-letter queue and RedrivePolicy, as operators configure
// them.
func (m *Moto) CreateQueue(ctx context.Context, prefix string, maxReceiveCount int) (*MotoQueue, error) {
	q := &MotoQueue{m: m}
	attrs := map[string]string{}
	if maxReceiveCount > 0 {
		dlq, err := m.CreateQueue(ctx, prefix+"-dlq", 0)
		if err != nil {
			return nil, err
		}
		q.DLQ = dlq
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":"%s","maxReceiveCount":"%d"}`, dlq.ARN, maxReceiveCount)
	}
	out, err := m.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(m.uniqueName(prefix)), Attributes: attrs})
	if err != nil {
		return nil, fmt.Errorf("moto: create queue: %w", err)
	}
	q.URL = aws.ToString(out.QueueUrl)
	a, err := m.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return nil, fmt.Errorf("moto: queue arn: %w", err)
	}
	q.ARN = a.Attributes[string(types.QueueAttributeNameQueueArn)]
	return q, nil
}

// Send sends body and returns the message id.
func (q *MotoQueue) Send(ctx context.Context, body string) (string, error) {
	out, err := q.m.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(body)})
	if err != nil {
		return "", fmt.Errorf("moto: send: %w", err)
	}
	return aws.ToString(out.MessageId), nil
}

// Counts returns ApproximateNumberOfMessages and
// ApproximateNumberOfMessagesNotVisible (exact in moto).
func (q *MotoQueue) Counts(ctx context.Context) (visible, inFlight int, err error) {
	a, err := q.m.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.URL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return 0, 0, fmt.Errorf("moto: queue counts: %w", err)
	}
	_, err = fmt.Sscan(a.Attributes["ApproximateNumberOfMessages"]+" "+a.Attributes["ApproximateNumberOfMessagesNotVisible"], &visible, &inFlight)
	return visible, inFlight, err
}

// snsCall sends one SNS Query API request and returns the response body.
// It is signed in form only: moto does not check signatures.
func (m *Moto) snsCall(ctx context.Context, params url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/", strings.NewReader(params.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIATESTTESTTESTTEST/20261202/"+MotoRegion+"/sns/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("moto: sns %s: %w", params.Get("Action"), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("moto: sns %s: %s: %s", params.Get("Action"), resp.Status, b)
	}
	return string(b), nil
}

var snsARNRE = regexp.MustCompile(`<(TopicArn|SubscriptionArn)>([^<]+)</`)

// MotoTopic is an SNS topic on moto subscribed to a queue.
type MotoTopic struct {
	m   *Moto
	ARN string
}

// SubscribedTopic creates a topic delivering to q, in SNS's envelope or,
// with raw, the message alone (RawMessageDelivery).
func (m *Moto) SubscribedTopic(ctx context.Context, q *MotoQueue, raw bool) (*MotoTopic, error) {
	out, err := m.snsCall(ctx, url.Values{"Action": {"CreateTopic"}, "Name": {m.uniqueName("lifecycle-topic")}})
	if err != nil {
		return nil, err
	}
	match := snsARNRE.FindStringSubmatch(out)
	if match == nil {
		return nil, fmt.Errorf("moto: no TopicArn in %s", out)
	}
	t := &MotoTopic{m: m, ARN: match[2]}
	out, err = m.snsCall(ctx, url.Values{"Action": {"Subscribe"}, "TopicArn": {t.ARN}, "Protocol": {"sqs"}, "Endpoint": {q.ARN}})
	if err != nil {
		return nil, err
	}
	if match = snsARNRE.FindStringSubmatch(out); match == nil {
		return nil, fmt.Errorf("moto: no SubscriptionArn in %s", out)
	}
	if raw {
		if _, err := m.snsCall(ctx, url.Values{"Action": {"SetSubscriptionAttributes"}, "SubscriptionArn": {match[2]},
			"AttributeName": {"RawMessageDelivery"}, "AttributeValue": {"true"}}); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Publish publishes message with subject, as Auto Scaling does to a
// lifecycle hook's topic.
func (t *MotoTopic) Publish(ctx context.Context, subject, message string) error {
	_, err := t.m.snsCall(ctx, url.Values{"Action": {"Publish"}, "TopicArn": {t.ARN}, "Subject": {subject}, "Message": {message}})
	return err
}
