//go:build !linux

package testpeers

import "os/exec"

// setParentDeathSignal is a no-op where the kernel offers no parent-death
// signal: the server is stopped by Close only.
func setParentDeathSignal(*exec.Cmd) {}
