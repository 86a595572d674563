package trinoadmin_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// TestBasicAuthOverHTTPSWithACustomCA checks what the client sends to a
// worker with password authentication: HTTP Basic over TLS verified
// against the configured CA, and no X-Trino-User beside it (Trino would
// treat a different one as impersonation).
func TestBasicAuthOverHTTPSWithACustomCA(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(context.Background()))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`"ACTIVE"`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := trinoadmin.New(trinoadmin.Options{URL: srv.URL, User: "scaledownd", Password: "pw", CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.State(context.Background()); err != nil || s != "ACTIVE" {
		t.Fatalf("state = %q, %v", s, err)
	}
	mu.Lock()
	r := seen[0]
	mu.Unlock()
	user, pass, ok := r.BasicAuth()
	if !ok || user != "scaledownd" || pass != "pw" {
		t.Fatalf("basic auth = %q %q %v", user, pass, ok)
	}
	if r.Header.Get("X-Trino-User") != "" {
		t.Fatal("X-Trino-User sent together with Basic auth")
	}

	// Verification is on by default: without the CA the certificate is refused.
	strict, _ := trinoadmin.New(trinoadmin.Options{URL: srv.URL, User: "scaledownd"})
	if _, err := strict.State(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unverified certificate accepted: %v", err)
	}
	// A CA file without certificates is a clear error.
	empty := filepath.Join(t.TempDir(), "empty.pem")
	_ = os.WriteFile(empty, []byte("nothing"), 0o600)
	if _, err := trinoadmin.New(trinoadmin.Options{URL: srv.URL, CAFile: empty}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("empty CA file: %v", err)
	}
}
