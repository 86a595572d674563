// This file implements a small fake EC2 instance metadata service (IMDSv2
// only) for unit tests: the session-token flow, the instance identity, and
// the three notices a termination daemon polls (Auto Scaling target
// lifecycle state, Spot instance action, rebalance recommendation).

package testpeers

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDS protocol constants and limits.
const (
	imdsTokenPath     = "/latest/api/token"
	imdsTTLHeader     = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	imdsTokenHeader   = "X-Aws-Ec2-Metadata-Token"
	imdsMaxTTLSeconds = 21600
)

// IMDSOptions configures a fake IMDS. Empty fields get realistic defaults.
type IMDSOptions struct {
	// InstanceID defaults to "i-1234567890abcdef0".
	InstanceID string
	// Region defaults to "us-east-1".
	Region string
	// AvailabilityZone defaults to Region + "a".
	AvailabilityZone string
	// AccountID defaults to "123456789012".
	AccountID string
	// InstanceType defaults to "m5.large".
	InstanceType string
	// ImageID defaults to "ami-0abcdef1234567890".
	ImageID string
	// PrivateIP defaults to "10.0.0.10".
	PrivateIP string
	// InstanceLifeCycle is meta-data/instance-life-cycle: "on-demand"
	// (the default) or "spot". Only Spot instances get interruption
	// notices and rebalance recommendations.
	InstanceLifeCycle string
	// Now is the fake's clock for token expiry. Default time.Now.
	Now func() time.Time
}

// IMDS is a fake IMDSv2 endpoint. Create it with NewIMDS and use URL() as
// imds.Options.Endpoint. All methods are safe for concurrent use.
type IMDS struct {
	*peerServer

	opts    IMDSOptions
	started time.Time

	mu          sync.Mutex
	tokens      map[string]time.Time // token → expiry
	targetState string
	spotAction  string
	spotTime    time.Time
	rebalance   time.Time
	down        bool
}

// NewIMDS starts a fake IMDS on 127.0.0.1. It panics only if no loopback
// port can be bound.
func NewIMDS(opts IMDSOptions) *IMDS {
	opts.InstanceID = cmp.Or(opts.InstanceID, "i-1234567890abcdef0")
	opts.Region = cmp.Or(opts.Region, "us-east-1")
	opts.AvailabilityZone = cmp.Or(opts.AvailabilityZone, opts.Region+"a")
	opts.AccountID = cmp.Or(opts.AccountID, "123456789012")
	opts.InstanceType = cmp.Or(opts.InstanceType, "m5.large")
	opts.ImageID = cmp.Or(opts.ImageID, "ami-0abcdef1234567890")
	opts.PrivateIP = cmp.Or(opts.PrivateIP, "10.0.0.10")
	opts.InstanceLifeCycle = cmp.Or(opts.InstanceLifeCycle, "on-demand")
	m := &IMDS{opts: opts, tokens: make(map[string]time.Time)}
	m.peerServer = newPeerServer("imds", opts.Now, http.HandlerFunc(m.serveHTTP))
	m.started = m.now().UTC().Truncate(time.Second)
	return m
}

// SetTargetLifecycleState sets autoscaling/target-lifecycle-state, e.g.
// "InService" or "Terminated"; "" makes it 404 again.
func (m *IMDS) SetTargetLifecycleState(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.targetState = s
}

// SetSpotAction publishes spot/instance-action ("terminate", "stop" or
// "hibernate" at t) and, for "terminate", spot/termination-time; action ""
// withdraws both (404).
func (m *IMDS) SetSpotAction(action string, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.spotAction, m.spotTime = action, t
}

// SetRebalance publishes events/recommendations/rebalance with noticeTime
// t; the zero time withdraws it (404).
func (m *IMDS) SetRebalance(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebalance = t
}

// SetDown makes every request fail with 503 Service Unavailable (true) or
// restores service (false).
func (m *IMDS) SetDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

// RevokeTokens invalidates every issued session token, as if they had
// expired: the next metadata request gets 401 and the client must fetch a
// new token.
func (m *IMDS) RevokeTokens() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.tokens)
}

// serveHTTP dispatches one IMDS request.
func (m *IMDS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	op, rel := imdsOp(r.URL.Path)
	params := map[string]string{"Method": r.Method, "Path": rel}
	if v := r.Header.Get(imdsTTLHeader); v != "" {
		params["TTLSeconds"] = v
	}
	if v := r.Header.Get(imdsTokenHeader); v != "" {
		params["Token"] = v
	}
	fault, answer := m.begin(r, op, params)
	if !answer {
		return
	}
	if fault != nil {
		if fault.Message != "" {
			imdsWriteText(w, fault.status(), "text/plain", fault.Message)
		} else {
			imdsWriteStatus(w, fault.status())
		}
		return
	}
	m.mu.Lock()
	down := m.down
	m.mu.Unlock()
	if down {
		imdsWriteStatus(w, http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path == imdsTokenPath {
		m.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		imdsWriteStatus(w, http.StatusMethodNotAllowed)
		return
	}
	if !m.validToken(r.Header.Get(imdsTokenHeader)) {
		imdsWriteStatus(w, http.StatusUnauthorized)
		return
	}
	body, ok := m.lookup(op, rel)
	if !ok {
		imdsWriteStatus(w, http.StatusNotFound)
		return
	}
	imdsWriteText(w, http.StatusOK, "text/plain", body)
}

// imdsOp names the operation of a path for the call log.
func imdsOp(path string) (op, rel string) {
	// under is the path below dir, if it is dir or below it.
	under := func(dir string) (string, bool) {
		rel, ok := strings.CutPrefix(path, dir)
		return strings.TrimPrefix(rel, "/"), ok && (rel == "" || rel[0] == '/')
	}
	if path == imdsTokenPath {
		return "GetToken", ""
	} else if rel, ok := under("/latest/meta-data"); ok {
		return "GetMetadata", rel
	} else if rel, ok := under("/latest/dynamic"); ok {
		return "GetDynamicData", rel
	} else if path == "/latest/user-data" {
		return "GetUserData", ""
	}
	return "Unknown", path
}

// serveToken implements PUT /latest/api/token.
func (m *IMDS) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		imdsWriteStatus(w, http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		imdsWriteStatus(w, http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
	if err != nil || ttl < 1 || ttl > imdsMaxTTLSeconds {
		imdsWriteStatus(w, http.StatusBadRequest)
		return
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	token := base64.StdEncoding.EncodeToString(b)
	m.mu.Lock()
	m.tokens[token] = m.now().Add(time.Duration(ttl) * time.Second)
	m.mu.Unlock()
	w.Header().Set(imdsTTLHeader, strconv.Itoa(ttl))
	imdsWriteText(w, http.StatusOK, "text/plain", token)
}

// validToken reports whether token was issued and has not expired.
func (m *IMDS) validToken(token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.tokens[token] // never "": tokens are 32 random bytes
	if ok && !m.now().Before(exp) {
		delete(m.tokens, token)
		ok = false
	}
	return ok
}

// imdsIdentity is the instance identity document.
type imdsIdentity struct {
	AccountID               string   `json:"accountId"`
	Architecture            string   `json:"architecture"`
	AvailabilityZone        string   `json:"availabilityZone"`
	BillingProducts         []string `json:"billingProducts"`
	DevpayProductCodes      []string `json:"devpayProductCodes"`
	MarketplaceProductCodes []string `json:"marketplaceProductCodes"`
	ImageID                 string   `json:"imageId"`
	InstanceID              string   `json:"instanceId"`
	InstanceType            string   `json:"instanceType"`
	KernelID                *string  `json:"kernelId"`
	PendingTime             string   `json:"pendingTime"`
	PrivateIP               string   `json:"privateIp"`
	RamdiskID               *string  `json:"ramdiskId"`
	Region                  string   `json:"region"`
	Version                 string   `json:"version"`
}

// lookup returns the text/plain document at the path imdsOp split into op
// and rel, and false for 404 (user data included: the fake has none).
func (m *IMDS) lookup(op, rel string) (body string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.opts
	if op == "GetDynamicData" && rel == "instance-identity/document" {
		b, err := json.MarshalIndent(imdsIdentity{
			AccountID:        o.AccountID,
			Architecture:     "x86_64",
			AvailabilityZone: o.AvailabilityZone,
			ImageID:          o.ImageID,
			InstanceID:       o.InstanceID,
			InstanceType:     o.InstanceType,
			PendingTime:      m.started.Format(time.RFC3339),
			PrivateIP:        o.PrivateIP,
			Region:           o.Region,
			Version:          "2017-09-30",
		}, "", "  ")
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	if op != "GetMetadata" {
		return "", false
	}
	static := map[string]string{
		"ami-id":                      o.ImageID,
		"instance-id":                 o.InstanceID,
		"instance-life-cycle":         o.InstanceLifeCycle,
		"instance-type":               o.InstanceType,
		"local-ipv4":                  o.PrivateIP,
		"placement":                   "availability-zone\nregion",
		"placement/":                  "availability-zone\nregion",
		"placement/region":            o.Region,
		"placement/availability-zone": o.AvailabilityZone,
		"events":                      "recommendations/",
		"events/":                     "recommendations/",
	}
	if v, ok := static[rel]; ok {
		return v, true
	}
	switch rel {
	case "":
		dirs := []string{"ami-id", "autoscaling/", "events/", "instance-id", "instance-life-cycle", "instance-type", "local-ipv4", "placement/"}
		if m.spotAction != "" {
			dirs = append(dirs, "spot/")
		}
		return strings.Join(dirs, "\n"), true
	case "autoscaling", "autoscaling/":
		return "target-lifecycle-state", m.targetState != ""
	case "autoscaling/target-lifecycle-state":
		return m.targetState, m.targetState != ""
	case "events/recommendations", "events/recommendations/":
		return "rebalance", !m.rebalance.IsZero()
	case "events/recommendations/rebalance":
		if m.rebalance.IsZero() {
			return "", false
		}
		return fmt.Sprintf(`{"noticeTime":%q}`, m.rebalance.UTC().Format(time.RFC3339)), true
	case "spot", "spot/":
		if m.spotAction == "" {
			return "", false
		}
		if m.spotAction == "terminate" {
			return "instance-action\ntermination-time", true
		}
		return "instance-action", true
	case "spot/instance-action":
		if m.spotAction == "" {
			return "", false
		}
		return fmt.Sprintf(`{"action":%q,"time":%q}`, m.spotAction, m.spotTime.UTC().Format(time.RFC3339)), true
	case "spot/termination-time":
		if m.spotAction != "terminate" {
			return "", false
		}
		return m.spotTime.UTC().Format("2006-01-02T15:04:05.000Z"), true
	}
	return "", false
}

// imdsWriteText writes a plain answer.
func imdsWriteText(w http.ResponseWriter, status int, ctype, body string) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Server", "EC2ws")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// imdsWriteStatus writes an error in the HTML page layout IMDS uses.
func imdsWriteStatus(w http.ResponseWriter, status int) {
	title := fmt.Sprintf("%d - %s", status, http.StatusText(status))
	page := `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
	"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>` + title + `</title>
 </head>
 <body>
  <h1>` + title + `</h1>
 </body>
</html>
`
	imdsWriteText(w, status, "text/html", page)
}
