// Command docgen rewrites the configuration table in README.md from the
// settings themselves (`make docs`); a test fails while the two differ.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/scaledownd/scaledownd/internal/config"
)

func main() {
	if err := run("README.md"); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	const head = "| Key (YAML path) | Flag |"
	start := strings.Index(s, head)
	if start < 0 {
		return fmt.Errorf("%s has no configuration table", path)
	}
	end := strings.Index(s[start:], "\n\n")
	if end < 0 {
		return fmt.Errorf("configuration table in %s does not end", path)
	}
	out := s[:start] + strings.TrimRight(config.MarkdownTable(), "\n") + s[start+end:]
	return os.WriteFile(path, []byte(out), 0o644)
}
