package ops

import (
	"bytes"
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

// webClient returns the scheme and client for the listener, and the
// credentials to send.
func (o StatusOptions) webClient() (scheme string, c *http.Client, user, password string, err error) {
	c = &http.Client{}
	if o.WebConfigFile == "" {
		return "http", c, "", "", nil
	}
	b, err := os.ReadFile(o.WebConfigFile)
	if err != nil {
		return "", nil, "", "", fmt.Errorf("web.config.file: %w", err)
	}
	var wc struct {
		TLS struct {
			Cert     string `yaml:"cert"`
			CertFile string `yaml:"cert_file"`
		} `yaml:"tls_server_config"`
		Users map[string]string `yaml:"basic_auth_users"`
	}
	if err := yaml.Unmarshal(b, &wc); err != nil {
		return "", nil, "", "", fmt.Errorf("web.config.file %s: %w", o.WebConfigFile, err)
	}
	scheme = "http"
	if wc.TLS.Cert != "" || wc.TLS.CertFile != "" {
		certPEM := []byte(wc.TLS.Cert)
		if wc.TLS.CertFile != "" {
			f := wc.TLS.CertFile
			if !filepath.IsAbs(f) {
				f = filepath.Join(filepath.Dir(o.WebConfigFile), f)
			}
			if certPEM, err = os.ReadFile(f); err != nil {
				return "", nil, "", "", fmt.Errorf("web.config.file's certificate: %w", err)
			}
		}
		block, _ := pem.Decode(certPEM)
		if block == nil {
			return "", nil, "", "", fmt.Errorf("web.config.file's certificate: no PEM block")
		}
		want := block.Bytes
		scheme = "https"
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{
			// The address is loopback and the name may be anything: trust
			// exactly the certificate the daemon serves instead.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], want) {
					return errors.New("the listener's certificate is not the one in web.config.file")
				}
				return nil
			},
		}}
	}
	if len(wc.Users) > 0 {
		if o.User == "" || o.PasswordFile == "" {
			return "", nil, "", "", fmt.Errorf("the listener asks for basic auth (web.config.file %s): pass --user and --password-file", o.WebConfigFile)
		}
		pw, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return "", nil, "", "", fmt.Errorf("--password-file: %w", err)
		}
		user, password = o.User, strings.TrimRight(string(pw), "\r\n")
	}
	return scheme, c, user, password, nil
}

// StatusURL is where the running daemon answers /status for a listen
// address such as ":10180" (plain HTTP).
func StatusURL(listen string) (string, error) {
	return statusURL("http", listen)
}

func statusURL(scheme, listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen-address %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/status", nil
}

// Status fetches the running daemon's status and writes it: as indented
// JSON with asJSON, else as lines of "key: value".
func Status(ctx context.Context, w io.Writer, o StatusOptions, asJSON bool) error {
	scheme, client, user, password, err := o.webClient()
	if err != nil {
		return err
	}
	url, err := statusURL(scheme, o.Listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ask the running daemon at %s: %w (is scaledownd running?)", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("daemon answered %s", resp.Status)
	}
	var st map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	for _, k := range []string{"phase", "instance_id", "asg", "hook", "token_prefix", "started", "deadline", "completed"} {
		if v, ok := st[k]; ok {
			fmt.Fprintf(w, "%-13s %v\n", k+":", v)
		}
	}
	return nil
}
