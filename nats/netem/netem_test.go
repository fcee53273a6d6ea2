package netem

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// echoServer accepts connections on 127.0.0.1 and writes back what it reads.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _, _ = io.Copy(c, c); c.Close() })
		}
	})
	return ln.Addr().String()
}

func newLink(t testing.TB, upstream string) *Link {
	t.Helper()
	n := New()
	t.Cleanup(n.Close)
	l, err := n.Link("test", upstream)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dial(t testing.TB, l *Link) net.Conn {
	t.Helper()
	c, err := l.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads it back, returning how long it took.
func roundTrip(t testing.TB, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read back %q, sent %q", got, msg)
	}
	return time.Since(start)
}

func TestLinkForwardsBothWaysAndCountsConnections(t *testing.T) {
	l := newLink(t, echoServer(t))
	for i := range 3 {
		c := dial(t, l)
		big := bytes.Repeat([]byte{byte('a' + i)}, 1<<20) // larger than any buffer on the way
		var wg sync.WaitGroup
		wg.Go(func() { roundTrip(t, c, big) })
		wg.Wait()
	}
	if got := l.Conns(); got != 3 {
		t.Errorf("Conns() = %d, want 3", got)
	}
}

// The delay is a lower bound that holds in both directions; it can change
// while connections are open. (A lower bound cannot fail on a slow machine.)
func TestDelayAppliesBothWaysAndChangesAtRunTime(t *testing.T) {
	l := newLink(t, echoServer(t))
	c := dial(t, l)
	roundTrip(t, c, []byte("warm"))
	for _, d := range []time.Duration{40 * time.Millisecond, 5 * time.Millisecond, 70 * time.Millisecond} {
		l.SetDelay(d)
		if got := l.Delay(); got != d {
			t.Fatalf("Delay() = %v, want %v", got, d)
		}
		if took := roundTrip(t, c, []byte("ping")); took < 2*d {
			t.Errorf("round trip with a one-way delay of %v took %v, want at least %v", d, took, 2*d)
		}
	}
}

// fakeClock records the instants the toxic sleeps until, and jumps there.
type fakeClock struct {
	at     time.Time
	sleeps []time.Time
}

func (f *fakeClock) now() time.Time { return f.at }
func (f *fakeClock) sleepUntil(t time.Time) {
	f.sleeps = append(f.sleeps, t)
	if t.After(f.at) {
		f.at = t
	}
}
func (f *fakeClock) close() {}

// Chunks in flight are not serialized behind one another: each one waits
// until its own arrival plus the delay, so throughput is not capped at one
// chunk per delay.
func TestDelayPipelinesChunks(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const delay = 10 * time.Millisecond
	in, out := make(chan *stream.StreamChunk, 8), make(chan *stream.StreamChunk, 8)
	arrivals := []time.Duration{0, time.Microsecond, 2 * time.Microsecond, 30 * time.Millisecond}
	for i, a := range arrivals {
		in <- &stream.StreamChunk{Data: []byte{byte(i)}, Timestamp: t0.Add(a)}
	}
	close(in)
	var link linkState
	link.healed = closedChan()
	link.delay.Store(int64(delay))
	clk := &fakeClock{at: t0}
	pipe(toxics.NewToxicStub(in, out), &link, clk)

	var got []byte
	for c := range out {
		got = append(got, c.Data...)
	}
	if !bytes.Equal(got, []byte{0, 1, 2, 3}) {
		t.Fatalf("chunks out %v, want all four in order", got)
	}
	// The first chunk waits the whole delay, the next two are due 1 and
	// 2 us after it (no extra wait of their own), the last one a delay
	// after its own arrival.
	want := []time.Time{t0.Add(delay), t0.Add(delay + time.Microsecond), t0.Add(delay + 2*time.Microsecond), t0.Add(30*time.Millisecond + delay)}
	if !slices.Equal(clk.sleeps, want) {
		t.Errorf("slept until %v, want %v", clk.sleeps, want)
	}
}

func TestBlackholeHoldsEverythingUntilHealed(t *testing.T) {
	l := newLink(t, echoServer(t))
	c := dial(t, l)
	roundTrip(t, c, []byte("before"))
	if err := l.Cut(Blackhole); err != nil {
		t.Fatal(err)
	}
	if got := l.Cutting(); got != Blackhole {
		t.Fatalf("Cutting() = %v", got)
	}
	msg := bytes.Repeat([]byte("held "), 1000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	// Nothing comes back while cut (the connection stays open).
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a blackholed link: %d bytes, %v", n, err)
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	// Everything written during the cut arrives, in order.
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after heal: %v (equal=%v)", err, bytes.Equal(got, msg))
	}
	roundTrip(t, c, []byte("after"))
}

func TestResetClosesConnectionsAndRefusesNewOnesUntilHealed(t *testing.T) {
	l := newLink(t, echoServer(t))
	c := dial(t, l)
	roundTrip(t, c, []byte("before"))
	if err := l.Cut(Reset); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open connection through a reset link: read %v, want closed", err)
	}
	if c2, err := l.Dial(); err == nil {
		c2.Close()
		t.Fatal("a reset link accepted a connection")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, l), []byte("after"))
}

func TestDeadAddrRefusesConnections(t *testing.T) {
	n := New()
	defer n.Close()
	addr, err := n.DeadAddr()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		// Where the address is a listener closing every connection.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatalf("connection to dead address %s served", addr)
	}
}
