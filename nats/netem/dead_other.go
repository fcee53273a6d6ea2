//go:build !linux

package netem

import "net"

// deadAddr is a listener on 127.0.0.1 that closes every connection at once
// (where a bound, never listening socket is not at hand).
type deadAddr struct {
	ln   net.Listener
	addr string
}

func newDeadAddr() (deadAddr, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return deadAddr{}, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return deadAddr{ln: ln, addr: ln.Addr().String()}, nil
}

func (d deadAddr) close() { d.ln.Close() }
