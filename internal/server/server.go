// Package server is scaledownd's HTTP listener: /metrics for Prometheus,
// /healthz (fails when a main loop stops making progress), /readyz (fails,
// naming the part, until the daemon is set up) and /status (the action in
// progress, as JSON). Every endpoint is a read-only GET.
//
// TLS and basic authentication follow the Prometheus exporter convention:
// a web configuration file (--web.config.file) in the format of
// prometheus/exporter-toolkit, served by that library as node_exporter
// does, so the file, its reloading on each connection and its bcrypt
// password hashes work the same as for every official exporter.
package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"go.uber.org/zap"
)

// Health tracks liveness (loops that must keep beating) and readiness
// (parts that must say they are ready).
type Health struct {
	mu    sync.Mutex
	now   func() time.Time
	loops map[string]*loop
	parts map[string]string // part → reason it is not ready; "" when ready
}

type loop struct {
	last       time.Time
	maxSilence time.Duration
}

// NewHealth returns an empty Health.
func NewHealth() *Health {
	return &Health{now: time.Now, loops: map[string]*loop{}, parts: map[string]string{}}
}

// Watch registers a loop that must call the returned function at least
// every maxSilence, or /healthz fails.
func (h *Health) Watch(name string, maxSilence time.Duration) (beat func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := &loop{last: h.now(), maxSilence: maxSilence}
	h.loops[name] = l
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		l.last = h.now()
	}
}

// SetReady marks a part ready (reason "") or not ready with a reason.
func (h *Health) SetReady(part, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.parts[part] = reason
}

// Live reports whether every watched loop has beaten recently.
func (h *Health) Live() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var stuck []string
	for name, l := range h.loops {
		if since := h.now().Sub(l.last); since > l.maxSilence {
			stuck = append(stuck, fmt.Sprintf("%s: no progress for %s", name, since.Round(time.Second)))
		}
	}
	sort.Strings(stuck)
	return len(stuck) == 0, strings.Join(stuck, "; ")
}

// Ready reports whether every part is ready.
func (h *Health) Ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var not []string
	for part, reason := range h.parts {
		if reason != "" {
			not = append(not, part+": "+reason)
		}
	}
	sort.Strings(not)
	return len(not) == 0, strings.Join(not, "; ")
}

// Server serves the endpoints.
type Server struct {
	srv       *http.Server
	ln        net.Listener
	webConfig string
	log       *zap.Logger
}

// Options are the listener's settings.
type Options struct {
	Addr string
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth); empty serves plain HTTP without authentication.
	WebConfigFile string
	Logger        *zap.Logger // nil: no logging
}

// New listens on opts.Addr and prepares the handlers. status, if not nil,
// is rendered as JSON at /status. A web configuration file that does not
// load (YAML, certificates, password hashes) is an error here, before
// anything listens.
func New(opts Options, reg prometheus.Gatherer, h *Health, status func() any) (*Server, error) {
	if opts.WebConfigFile != "" {
		if err := web.Validate(opts.WebConfigFile); err != nil {
			return nil, fmt.Errorf("web.config.file %s: %w", opts.WebConfigFile, err)
		}
	}
	log := cmp.Or(opts.Logger, zap.NewNop())
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", answer(h.Live))
	mux.HandleFunc("GET /readyz", answer(h.Ready))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var v any = struct{}{}
		if status != nil {
			v = status()
		}
		_ = json.NewEncoder(w).Encode(v)
	})
	return &Server{
		ln:        ln,
		webConfig: opts.WebConfigFile,
		log:       log,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
	}, nil
}

// answer serves check's verdict: "ok", or 503 and why not.
func answer(check func() (bool, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, why := check()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown: plain HTTP, or TLS and basic auth as the
// web configuration file says (re-read on every new connection).
func (s *Server) Serve() error {
	flags := &web.FlagConfig{WebConfigFile: &s.webConfig}
	if err := web.Serve(s.ln, s.srv, flags, newSlog(s.log)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

// Shutdown stops the server, waiting at most until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
