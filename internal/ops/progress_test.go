package ops

import (
	"bytes"
	"testing"
)

func TestProgressRewritesTheLineOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, tty: true}
	p.show("a", "draining · tasks 3")
	p.show("a", "draining · tasks 3") // redrawn on a terminal (the countdown moves)
	p.show("b", "drained")
	p.end()
	want := "\r\x1b[Kdraining · tasks 3\r\x1b[Kdraining · tasks 3\r\x1b[Kdrained\n"
	if b.String() != want {
		t.Fatalf("terminal output %q, want %q", b.String(), want)
	}
	if isTerminal(&b) {
		t.Fatal("a buffer is not a terminal")
	}
}
