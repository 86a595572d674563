package config

import (
	"cmp"
	"fmt"
	"strings"
)

// MarkdownTable renders every setting as the README's configuration
// reference, so the two cannot drift apart (a test compares them).
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Key (YAML path) | Flag | Environment | Default | Meaning |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, s := range Settings() {
		help := strings.ReplaceAll(s.Help, "|", `\|`)
		if s.Secret {
			help += " Secret: redacted in `config print` and logs."
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | `%s` | `%s` | %s |\n", s.Key, s.Flag, s.Env, cmp.Or(s.Default, "(empty)"), help)
	}
	return b.String()
}
