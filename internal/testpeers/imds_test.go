// Tests of the fake IMDS through the real aws-sdk-go-v2 imds client, and
// of its token rules over raw HTTP.

package testpeers

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// imdsTestFake starts a fake IMDS closed with the test.
func imdsTestFake(t *testing.T, opts IMDSOptions) *IMDS {
	t.Helper()
	f := NewIMDS(opts)
	t.Cleanup(f.Close)
	return f
}

// imdsTestClient builds an IMDSv2-only SDK client pointed at the fake.
func imdsTestClient(f *IMDS) *imds.Client {
	return imds.New(imds.Options{
		Endpoint:                 f.URL(),
		EnableFallback:           aws.FalseTernary,
		Retryer:                  sqsTestRetryer(),
		DisableDefaultMaxBackoff: true, // keep the test retryer's short backoff
	})
}

// imdsGet reads a metadata path through the SDK.
func imdsGet(ctx context.Context, c *imds.Client, path string) (string, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

// imdsStatus extracts the HTTP status of an SDK error (0 if none).
func imdsStatus(err error) int {
	var se interface{ HTTPStatusCode() int }
	if errors.As(err, &se) {
		return se.HTTPStatusCode()
	}
	return 0
}

func TestIMDSIdentityThroughSDK(t *testing.T) {
	t.Parallel()
	f := imdsTestFake(t, IMDSOptions{InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", InstanceType: "c7g.large"})
	c := imdsTestClient(f)
	ctx := sqsTestCtx(t, 10*time.Second)

	for path, want := range map[string]string{
		"instance-id":                 "i-0123456789abcdef0",
		"placement/region":            "eu-west-1",
		"placement/availability-zone": "eu-west-1a",
		"instance-type":               "c7g.large",
	} {
		got, err := imdsGet(ctx, c, path)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	region, err := c.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil || region.Region != "eu-west-1" {
		t.Errorf("GetRegion = %v, %v", region, err)
	}
	doc, err := c.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		t.Fatalf("GetInstanceIdentityDocument: %v", err)
	}
	d := doc.InstanceIdentityDocument
	if d.InstanceID != "i-0123456789abcdef0" || d.Region != "eu-west-1" || d.AvailabilityZone != "eu-west-1a" ||
		d.AccountID != "123456789012" || d.InstanceType != "c7g.large" || d.PendingTime.IsZero() {
		t.Errorf("identity document = %+v", d)
	}
	if got := f.CallCount("GetToken"); got != 1 {
		t.Errorf("GetToken calls = %d, want 1 (the SDK caches the token)", got)
	}
	if tok := f.Calls()[0]; tok.Op != "GetToken" || tok.Params["TTLSeconds"] != "300" {
		t.Errorf("first call = %+v, want the token PUT with the SDK's 300 s TTL", tok)
	}
}

func TestIMDSNoticesAre404UntilSet(t *testing.T) {
	t.Parallel()
	f := imdsTestFake(t, IMDSOptions{})
	c := imdsTestClient(f)
	ctx := sqsTestCtx(t, 10*time.Second)
	paths := []string{"autoscaling/target-lifecycle-state", "spot/instance-action", "spot/termination-time", "events/recommendations/rebalance"}
	for _, p := range paths {
		if _, err := imdsGet(ctx, c, p); imdsStatus(err) != http.StatusNotFound {
			t.Errorf("%s before set: %v, want 404", p, err)
		}
	}
	if got := f.CallCount("GetMetadata"); got != len(paths) {
		t.Errorf("GetMetadata calls = %d, want %d (404 is not retried)", got, len(paths))
	}

	at := time.Date(2026, 3, 1, 12, 2, 0, 0, time.UTC)
	f.SetTargetLifecycleState("Terminated")
	f.SetSpotAction("terminate", at)
	f.SetRebalance(at.Add(-time.Minute))
	for path, want := range map[string]string{
		"autoscaling/target-lifecycle-state": "Terminated",
		"spot/instance-action":               `{"action":"terminate","time":"2026-03-01T12:02:00Z"}`,
		"spot/termination-time":              "2026-03-01T12:02:00.000Z",
		"events/recommendations/rebalance":   `{"noticeTime":"2026-03-01T12:01:00Z"}`,
	} {
		if got, err := imdsGet(ctx, c, path); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	f.SetSpotAction("stop", at)
	if _, err := imdsGet(ctx, c, "spot/termination-time"); imdsStatus(err) != http.StatusNotFound {
		t.Errorf("termination-time for a stop notice: %v, want 404", err)
	}
	f.SetTargetLifecycleState("")
	if _, err := imdsGet(ctx, c, "autoscaling/target-lifecycle-state"); imdsStatus(err) != http.StatusNotFound {
		t.Errorf("cleared target state: %v, want 404", err)
	}
}

func TestIMDSTokenRules(t *testing.T) {
	t.Parallel()
	clock := newASGManualClock()
	f := imdsTestFake(t, IMDSOptions{Now: clock.Now})
	do := func(method, path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, f.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	const ttlHeader = "X-aws-ec2-metadata-token-ttl-seconds"

	if resp, _ := do(http.MethodGet, "/latest/meta-data/instance-id", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET without token: %d, want 401 (IMDSv2 only)", resp.StatusCode)
	}
	for _, ttl := range []string{"", "0", "21601", "abc"} {
		hdr := map[string]string{}
		if ttl != "" {
			hdr[ttlHeader] = ttl
		}
		if resp, _ := do(http.MethodPut, "/latest/api/token", hdr); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT token with TTL %q: %d, want 400", ttl, resp.StatusCode)
		}
	}
	if resp, _ := do(http.MethodPut, "/latest/api/token", map[string]string{ttlHeader: "60", "X-Forwarded-For": "1.2.3.4"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("PUT token with X-Forwarded-For: %d, want 403", resp.StatusCode)
	}
	resp, token := do(http.MethodPut, "/latest/api/token", map[string]string{ttlHeader: "60"})
	if resp.StatusCode != 200 || len(token) != 44 || resp.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") != "60" {
		t.Fatalf("PUT token: %d %q %v", resp.StatusCode, token, resp.Header)
	}
	auth := map[string]string{"X-aws-ec2-metadata-token": token}
	if resp, body := do(http.MethodGet, "/latest/meta-data/instance-id", auth); resp.StatusCode != 200 || body != "i-1234567890abcdef0" {
		t.Errorf("GET with token: %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{"/latest/meta-data/no-such-thing", "/latest/meta-datainstance-id", "/latest/dynamicinstance-identity/document"} {
		if resp, body := do(http.MethodGet, p, auth); resp.StatusCode != 404 || !strings.Contains(body, "404 - Not Found") {
			t.Errorf("unknown path %s: %d %q", p, resp.StatusCode, body)
		}
	}
	if resp, _ := do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": "forged"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged token: %d, want 401", resp.StatusCode)
	}
	clock.Advance(61 * time.Second)
	if resp, _ := do(http.MethodGet, "/latest/meta-data/instance-id", auth); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", resp.StatusCode)
	}
}

func TestIMDSRevokedTokenIsRefreshedBySDK(t *testing.T) {
	t.Parallel()
	f := imdsTestFake(t, IMDSOptions{})
	c := imdsTestClient(f)
	ctx := sqsTestCtx(t, 10*time.Second)
	if _, err := imdsGet(ctx, c, "instance-id"); err != nil {
		t.Fatal(err)
	}
	f.RevokeTokens()
	if got, err := imdsGet(ctx, c, "instance-id"); err != nil || got != "i-1234567890abcdef0" {
		t.Fatalf("after revocation: %q, %v", got, err)
	}
	if got := f.CallCount("GetToken"); got != 2 {
		t.Errorf("GetToken calls = %d, want 2 (refreshed after the 401)", got)
	}
}

func TestIMDSDownAndFaults(t *testing.T) {
	t.Parallel()
	f := imdsTestFake(t, IMDSOptions{})
	c := imdsTestClient(f)
	ctx := sqsTestCtx(t, 10*time.Second)

	f.SetDown(true)
	_, err := imdsGet(ctx, c, "instance-id")
	if err == nil {
		t.Fatal("metadata read succeeded while IMDS is down")
	}
	f.SetDown(false)
	if _, err := imdsGet(ctx, c, "instance-id"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	f.InjectFault("GetMetadata", Fault{Status: http.StatusInternalServerError, Times: 1})
	before := f.CallCount("GetMetadata")
	if _, err := imdsGet(ctx, c, "placement/region"); err != nil {
		t.Fatalf("after one injected 500: %v", err)
	}
	if got := f.CallCount("GetMetadata") - before; got != 2 {
		t.Errorf("GetMetadata calls = %d, want 2 (one retry)", got)
	}
}
