package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// StatusURL is where the running daemon answers /status for a listen
// address such as ":10180".
func StatusURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen-address %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/status", nil
}

// Status fetches the running daemon's status and writes it: as indented
// JSON with asJSON, else as lines of "key: value".
func Status(ctx context.Context, w io.Writer, listen string, asJSON bool) error {
	url, err := StatusURL(listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
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
