package ops

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// StatusOptions say how to reach the running daemon's listener.
type StatusOptions struct {
	Listen string // listen-address
	// WebConfigFile is the listener's web.config.file: with TLS on, the
	// daemon's certificate there is the one trusted (pinned: the request
	// goes to loopback); with basic auth on, User and PasswordFile are sent.
	WebConfigFile      string
	User, PasswordFile string
}

// webConfig is the part of the listener's web.config.file read here.
type webConfig struct {
	TLS struct {
		Cert     string `yaml:"cert"`
		CertFile string `yaml:"cert_file"`
	} `yaml:"tls_server_config"`
	Users map[string]string `yaml:"basic_auth_users"`
}

func readWebConfig(file string) (wc webConfig, err error) {
	b, err := os.ReadFile(file)
	if err == nil {
		err = yaml.Unmarshal(b, &wc)
	}
	if err != nil {
		return wc, fmt.Errorf("web.config.file %s: %w", file, err)
	}
	return wc, nil
}

func (wc webConfig) tlsOn() bool { return wc.TLS.Cert != "" || wc.TLS.CertFile != "" }

// statusDoc is the part of the daemon's /status this package reads.
type statusDoc struct {
	live
	Completed int `json:"completed"`
}

// statusClient is how to ask the running daemon for its status.
type statusClient struct {
	url, user, password string
	http                *http.Client
}

// client returns how to reach the listener: its /status URL on loopback,
// the HTTP client and the credentials to send.
func (o StatusOptions) client() (statusClient, error) {
	c := statusClient{http: &http.Client{}}
	scheme := "http"
	if o.WebConfigFile != "" {
		wc, err := readWebConfig(o.WebConfigFile)
		if err != nil {
			return c, err
		}
		if wc.tlsOn() {
			certPEM := []byte(wc.TLS.Cert)
			if f := wc.TLS.CertFile; f != "" {
				if !filepath.IsAbs(f) {
					f = filepath.Join(filepath.Dir(o.WebConfigFile), f)
				}
				if certPEM, err = os.ReadFile(f); err != nil {
					return c, fmt.Errorf("web.config.file's certificate: %w", err)
				}
			}
			block, _ := pem.Decode(certPEM)
			if block == nil {
				return c, fmt.Errorf("web.config.file's certificate: no PEM block")
			}
			scheme = "https"
			c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{
				// The address is loopback and the name may be anything: trust
				// exactly the certificate the daemon serves instead.
				InsecureSkipVerify: true,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) == 0 || !bytes.Equal(raw[0], block.Bytes) {
						return errors.New("the listener's certificate is not the one in web.config.file")
					}
					return nil
				},
			}}
		}
		if len(wc.Users) > 0 {
			if o.User == "" || o.PasswordFile == "" {
				return c, fmt.Errorf("the listener asks for basic auth (web.config.file %s): pass --user and --password-file", o.WebConfigFile)
			}
			pw, err := os.ReadFile(o.PasswordFile)
			if err != nil {
				return c, fmt.Errorf("--password-file: %w", err)
			}
			c.user, c.password = o.User, strings.TrimRight(string(pw), "\r\n")
		}
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return c, fmt.Errorf("listen-address %q: %w", o.Listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c.url = scheme + "://" + net.JoinHostPort(host, port) + "/status"
	return c, nil
}

// fetch asks the daemon for its status: the whole document and the fields
// read here.
func (c statusClient) fetch(ctx context.Context) (map[string]any, statusDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, statusDoc{}, err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, statusDoc{}, fmt.Errorf("ask the running daemon at %s: %w (is scaledownd running?)", c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusDoc{}, fmt.Errorf("daemon answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, statusDoc{}, fmt.Errorf("read status: %w", err)
	}
	var st map[string]any
	var doc statusDoc
	if err = json.Unmarshal(body, &st); err == nil {
		err = json.Unmarshal(body, &doc)
	}
	if err != nil {
		return nil, statusDoc{}, fmt.Errorf("decode status: %w", err)
	}
	return st, doc, nil
}

// Status fetches the running daemon's status and writes it: as indented
// JSON with asJSON, else as lines of "key: value".
func Status(ctx context.Context, w io.Writer, o StatusOptions, asJSON bool) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	st, doc, err := c.fetch(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	line := func(k string, v any) { fmt.Fprintf(w, "%-13s %v\n", k+":", v) }
	for _, k := range []string{"phase", "instance_id", "asg", "hook", "token_prefix", "started", "deadline"} {
		if v, ok := st[k]; ok {
			line(k, v)
		}
	}
	if doc.DeadlineIn != nil {
		line("deadline_in", time.Duration(*doc.DeadlineIn*float64(time.Second)).Round(time.Second))
	}
	if doc.TrinoState != "" {
		line("trino_state", doc.TrinoState)
	}
	if doc.TasksLeft != nil {
		line("tasks_left", *doc.TasksLeft)
	}
	if doc.BlockingQueries != nil {
		line("queries", fmt.Sprintf("%d blocking", *doc.BlockingQueries))
		for _, q := range doc.Queries {
			fmt.Fprintf(w, "  %s  %s  %s  %s  %.0fs\n", q.QueryID, cmp.Or(q.User, "-"), cmp.Or(q.Source, "-"), cmp.Or(q.State, "-"), q.ElapsedS)
		}
	}
	if v, ok := st["completed"]; ok {
		line("completed", v)
	}
	return nil
}

// Watch follows the running daemon's status every interval and shows the
// action in progress as it goes — phase, worker state, tasks left, blocking
// queries, time to the deadline — on one line rewritten in place on a
// terminal, as plain lines (one per change) otherwise. It returns once an
// action it saw has finished, or when ctx ends.
func Watch(ctx context.Context, w io.Writer, o StatusOptions, interval time.Duration) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	if interval <= 0 {
		interval = time.Second
	}
	p := newProgress(w)
	defer p.end()
	seen := false
	every(ctx, interval, func() bool {
		_, doc, err := c.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return false
		case err != nil:
			p.show("error "+err.Error(), "waiting for the daemon: "+err.Error())
		case doc.Phase == "idle" && seen:
			p.show("finished", fmt.Sprintf("idle · the action has finished (%d completed); `scaledownd history` shows its report", doc.Completed))
			return false
		case doc.Phase == "idle":
			p.show("idle", "idle · waiting for a lifecycle action")
		default:
			seen = true
			p.show(liveLine(doc.live))
		}
		return true
	})
	return nil
}
