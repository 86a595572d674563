//go:build race

package lifecycle

import (
	"errors"
	"syscall"
)

// sysRead is syscall.Read: under the race detector, its annotations order a
// write to a socket before the read of it (in tests the peers run in the
// same process), which RawSyscall would not.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

// sysWrite is syscall.Write, for the same reason as sysRead.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if err != nil && !errors.As(err, &errno) {
		return syscall.EIO
	}
	return errno
}
