//go:build linux

package netem

import (
	"fmt"
	"net"
	"syscall"
)

// deadAddr is a TCP socket bound on 127.0.0.1 that never listens, so
// connections to its port are refused and no one else can take the port.
type deadAddr struct {
	fd   int
	addr string
}

func newDeadAddr() (deadAddr, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return deadAddr{}, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return deadAddr{}, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return deadAddr{}, err
	}
	in, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		syscall.Close(fd)
		return deadAddr{}, fmt.Errorf("unexpected socket address %T", sa)
	}
	return deadAddr{fd: fd, addr: net.JoinHostPort("127.0.0.1", fmt.Sprint(in.Port))}, nil
}

func (d deadAddr) close() { syscall.Close(d.fd) }
