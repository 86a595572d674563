package lifecycle

import (
	"io"
	"net"
	"syscall"
)

// quietConn does a TCP connection's reads and writes with RawSyscall. The
// socket is non-blocking, so neither call can block the thread: a read or
// write that would block waits in the netpoller, as net.Conn's do. Unlike
// net.Conn's, they do not enter the runtime's syscall bookkeeping
// (entersyscall), which wakes the runtime's sysmon thread from its idle
// sleep on every call, and sysmon then polls every 20 µs until the process
// is idle again. In a daemon that sleeps between metadata polls those
// wake-ups cost more than the I/O: with them an idle daemon polling once a
// second (two requests per poll) switched threads 31 times a second and
// used 0.69 ms of CPU a second, without them 14 times and 0.40 ms (perf
// stat over 45 s; BenchmarkIMDSPollCPU measures only the busy part).
//
// Deadlines apply as for net.Conn: the waits are the netpoller's. Under
// the race detector the calls are syscall.Read and syscall.Write (see
// sysRead), which tell it that a write to a socket happens before the read
// of what it wrote, as net.Conn's do.
type quietConn struct {
	net.Conn
	rc syscall.RawConn
	// The buffer and result of the call in progress; the callbacks are
	// bound once so that a call allocates nothing. The IMDSClient's mutex
	// serialises calls.
	p             []byte
	n             int
	errno         syscall.Errno
	doRead, doPut func(fd uintptr) bool
}

// quiet returns conn's reader and writer: quiet ones for a TCP connection,
// else conn.
func quiet(conn net.Conn) io.ReadWriter {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	q := &quietConn{Conn: conn, rc: rc}
	q.doRead, q.doPut = q.read, q.write
	return q
}

// read is one read(2) of q.p; false asks the netpoller to wait.
func (q *quietConn) read(fd uintptr) bool {
	for {
		n, errno := sysRead(fd, q.p)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		q.n, q.errno = n, errno
		return true
	}
}

// write writes what is left of q.p; false asks the netpoller to wait.
func (q *quietConn) write(fd uintptr) bool {
	for q.n < len(q.p) {
		n, errno := sysWrite(fd, q.p[q.n:])
		switch errno {
		case 0:
			q.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			q.errno = errno
			return true
		}
	}
	return true
}

// Read reads as net.Conn's Read does.
func (q *quietConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q.p, q.n, q.errno = p, 0, 0
	err := q.rc.Read(q.doRead)
	n, errno := q.n, q.errno
	q.p = nil
	switch {
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: q.LocalAddr(), Addr: q.RemoteAddr(), Err: err}
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: q.LocalAddr(), Addr: q.RemoteAddr(), Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, as net.Conn's Write does.
func (q *quietConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q.p, q.n, q.errno = p, 0, 0
	err := q.rc.Write(q.doPut)
	n, errno := q.n, q.errno
	q.p = nil
	switch {
	case err != nil:
		return n, &net.OpError{Op: "write", Net: "tcp", Source: q.LocalAddr(), Addr: q.RemoteAddr(), Err: err}
	case errno != 0:
		return n, &net.OpError{Op: "write", Net: "tcp", Source: q.LocalAddr(), Addr: q.RemoteAddr(), Err: errno}
	}
	return n, nil
}
