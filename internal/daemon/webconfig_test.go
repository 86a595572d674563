package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scaledownd/scaledownd/internal/ops"
	"github.com/scaledownd/scaledownd/internal/testenv"
)

// testPKI is a throw-away CA and a server certificate for 127.0.0.1.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scaledownd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "scaledownd"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		caFile:   writePEM("ca.pem", "CERTIFICATE", caDER),
		certFile: writePEM("server.pem", "CERTIFICATE", der),
		keyFile:  writePEM("server-key.pem", "EC PRIVATE KEY", keyDER),
		pool:     pool,
	}
}

// TestRealPrometheusScrapesADrainOverTLSWithBasicAuth: with a web
// configuration file (--web.config.file: TLS and a bcrypt-hashed basic
// auth user, the exporter-toolkit format), the listener speaks only HTTPS,
// refuses requests without the right credentials and anything but GET, and
// Debian's Prometheus, configured with the CA and the password, scrapes a
// whole drain; `scaledownd status` gets through with the same file.
func TestRealPrometheusScrapesADrainOverTLSWithBasicAuth(t *testing.T) {
	bin := tool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	const user, password = "prometheus", "scrape-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte(fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
basic_auth_users:
  %s: %s
`, filepath.Base(pki.certFile), filepath.Base(pki.keyFile), user, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	passwordFile := filepath.Join(dir, "scrape-password")
	if err := os.WriteFile(passwordFile, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}

	env := world(t, testenv.Options{HeartbeatTimeout: 5 * time.Second})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	cfg := env.Config(env.Instance)
	cfg.Web.Config.File = webConfig
	d, _ := start(t, cfg)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	do := func(method, scheme, u, p string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, scheme+"://"+d.Addr+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if u != "" {
			req.SetBasicAuth(u, p)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do(http.MethodGet, "http", user, password); code == http.StatusOK {
		t.Errorf("plain HTTP was answered 200: the listener must speak TLS only\n%.200s", body)
	}
	for _, c := range []struct{ name, user, password string }{{"no credentials", "", ""}, {"a wrong password", user, "wrong"}, {"an unknown user", "someone", password}} {
		if code, _ := do(http.MethodGet, "https", c.user, c.password); code != http.StatusUnauthorized {
			t.Errorf("HTTPS with %s: status %d, want 401", c.name, code)
		}
	}
	if code, body := do(http.MethodGet, "https", user, password); code != http.StatusOK || !strings.Contains(body, "scaledownd_build_info") {
		t.Fatalf("HTTPS with the right credentials: status %d, want 200 with the metrics\n%.300s", code, body)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if code, _ := do(m, "https", user, password); code != http.StatusMethodNotAllowed {
			t.Errorf("%s /metrics: status %d, want 405 (every endpoint is a read-only GET)", m, code)
		}
	}

	// scaledownd status finds its way through the same file: the pinned
	// certificate, and the user it is given.
	var st strings.Builder
	so := ops.StatusOptions{Listen: d.Addr, WebConfigFile: webConfig, User: user, PasswordFile: passwordFile}
	if err := ops.Status(context.Background(), &st, so, false); err != nil || !strings.Contains(st.String(), "phase:") {
		t.Errorf("scaledownd status over TLS with basic auth: %v\n%s", err, st.String())
	}
	so.User = ""
	if err := ops.Status(context.Background(), io.Discard, so, false); err == nil || !strings.Contains(err.Error(), "--user") {
		t.Errorf("scaledownd status without a user: %v, want an error asking for --user", err)
	}

	query := startPrometheus(t, bin, fmt.Sprintf(`  - job_name: scaledownd
    scheme: https
    tls_config:
      ca_file: %q
    basic_auth:
      username: %q
      password_file: %q
    static_configs:
      - targets: [%q]
`, pki.caFile, user, passwordFile, d.Addr))
	prometheusSeesADrain(t, env, finish, query)
}
