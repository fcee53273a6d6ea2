package netem

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRoundTrip measures a ping-pong across a link with a one-way delay
// of 0.5 ms: ns/op is the emulated round trip (1 ms plus the proxy's own
// cost), showing how precisely the delay is kept.
//
//	go test -run '^$' -bench RoundTrip ./nats/netem/
func BenchmarkRoundTrip(b *testing.B) {
	for _, d := range []time.Duration{0, 500 * time.Microsecond} {
		b.Run("delay="+d.String(), func(b *testing.B) {
			l := newLink(b, echoServer(b))
			l.SetDelay(d)
			c := dial(b, l)
			msg := []byte("ping")
			roundTrip(b, c, msg)
			b.ResetTimer()
			for b.Loop() {
				roundTrip(b, c, msg)
			}
		})
	}
}

// BenchmarkPacedStream sends 200-byte writes at 30,000/s for 2 s one way
// across a link with a one-way delay of 0.5 ms (and directly, for
// comparison), each write on its own (the worst case: NATS coalesces more),
// and reports the CPU the whole test process used per message and in
// percent of one core; the difference between the two is the link's cost.
//
//	go test -run '^$' -bench PacedStream -benchtime 1x ./nats/netem/
func BenchmarkPacedStream(b *testing.B) {
	const rate, seconds, size = 30_000, 2, 200
	for _, proxied := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "link"}[proxied]
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			got := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				n, _ := io.Copy(io.Discard, c)
				got <- n
			}()
			addr := ln.Addr().String()
			if proxied {
				l := newLink(b, addr)
				l.SetDelay(500 * time.Microsecond)
				addr = l.Addr()
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, size)
			total := 0
			cpu0 := cpuTime()
			start := time.Now()
			for tick := 1; tick <= seconds*1000; tick++ { // 30 writes every millisecond
				for range rate / 1000 {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					total++
				}
				time.Sleep(time.Until(start.Add(time.Duration(tick) * time.Millisecond)))
			}
			c.Close()
			if n := <-got; n != int64(total*size) {
				b.Fatalf("received %d bytes, sent %d", n, total*size)
			}
			cpu := cpuTime() - cpu0
			wall := time.Since(start)
			b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-us/msg")
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%core")
			b.ReportMetric(float64(total)/wall.Seconds(), "msgs/s")
		})
	}
}

// cpuTime is the user plus system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
