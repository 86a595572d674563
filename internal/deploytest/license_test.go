package deploytest

import (
	"debug/buildinfo"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestLicenseIsConsistent: the repository's LICENSE is the Apache License
// 2.0 that packaging/nfpm.yaml and packaging/copyright declare, and the
// copyright file has a stanza for every module linked into the binary.
func TestLicenseIsConsistent(t *testing.T) {
	license := string(readRepoFile(t, "LICENSE"))
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "END OF TERMS AND CONDITIONS"} {
		if !strings.Contains(license, want) {
			t.Errorf("LICENSE lacks %q: not the full Apache License 2.0 text", want)
		}
	}
	var nfpm struct {
		License string `yaml:"license"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "packaging/nfpm.yaml"), &nfpm); err != nil {
		t.Fatal(err)
	}
	if nfpm.License != "Apache-2.0" {
		t.Errorf("packaging/nfpm.yaml: license %q, want Apache-2.0 (LICENSE)", nfpm.License)
	}

	copyright := string(readRepoFile(t, "packaging/copyright"))
	if !regexp.MustCompile(`(?m)^Files: \*\nCopyright: .*\nLicense: Apache-2.0$`).MatchString(copyright) {
		t.Error("packaging/copyright: the Files: * stanza is not Apache-2.0")
	}
	// Patterns of every Files: stanza (continuation lines start with a space).
	var patterns []string
	inFiles := false
	for _, line := range strings.Split(copyright, "\n") {
		switch {
		case strings.HasPrefix(line, "Files: "):
			inFiles = true
			patterns = append(patterns, strings.TrimSpace(strings.TrimPrefix(line, "Files: ")))
		case inFiles && strings.HasPrefix(line, " "):
			patterns = append(patterns, strings.TrimSpace(line))
		default:
			inFiles = false
		}
	}
	info, err := buildinfo.ReadFile(daemonBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Deps) < 10 {
		t.Fatalf("only %d modules in the binary's build info", len(info.Deps))
	}
	for _, dep := range info.Deps {
		covered := false
		for _, p := range patterns {
			if prefix, ok := strings.CutSuffix(p, "*"); ok && p != "*" && strings.HasPrefix(dep.Path+"/", prefix) {
				covered = true
				break
			}
		}
		if !covered {
			t.Errorf("packaging/copyright has no Files: stanza for %s %s, which the binary embeds", dep.Path, dep.Version)
		}
	}
}
