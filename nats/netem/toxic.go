package netem

import (
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// delayToxicType is the name the delay toxic is registered under.
const delayToxicType = "gamemodes_delay"

func init() { toxics.Register(delayToxicType, new(delayToxic)) }

// delayToxic passes each chunk on once it is the link's delay old (counted
// from when the proxy read it) and the link is not blackholed. Toxiproxy's
// own latency toxic has millisecond resolution and sleeps with Go timers;
// this one takes any duration and waits with a precise clock. It keeps no
// per-connection state beyond its clock, and reads the delay and the cut
// from the link on every chunk, so changing either needs no toxic update.
type delayToxic struct {
	link       *linkState
	countConns bool // count connections (set on the upstream direction only)
}

// GetBufferSize is the number of chunks that may wait in the toxic per
// connection direction: enough that a delay never holds back the reader.
func (t *delayToxic) GetBufferSize() int { return 4096 }

// NewState counts a connection; Toxiproxy calls it once per connection and
// direction when the connection starts.
func (t *delayToxic) NewState() any {
	if t.countConns {
		t.link.conns.Add(1)
	}
	return nil
}

// Pipe moves chunks from the stub's input to its output until the input
// closes or the toxic is interrupted.
func (t *delayToxic) Pipe(stub *toxics.ToxicStub) {
	clk := newClock()
	defer clk.close()
	pipe(stub, t.link, clk)
}

// clock waits until an instant; tests replace it.
type clock interface {
	now() time.Time
	// sleepUntil returns once the instant has passed. It is not
	// interruptible: an interrupt waits for at most the link's delay.
	sleepUntil(t time.Time)
	close()
}

// pipe is Pipe with its clock given.
func pipe(stub *toxics.ToxicStub, link *linkState, clk clock) {
	for {
		var c *stream.StreamChunk
		select {
		case <-stub.Interrupt:
			return
		case c = <-stub.Input:
		}
		if c == nil {
			stub.Close()
			return
		}
		if !hold(stub, link, clk, c) {
			stub.Output <- c // interrupted: pass it on at once, lose nothing
			return
		}
		stub.Output <- c
	}
}

// hold waits until chunk c may pass: it is the link's delay old and the link
// is not blackholed. It returns false when interrupted.
func hold(stub *toxics.ToxicStub, link *linkState, clk clock, c *stream.StreamChunk) bool {
	for {
		if healed := link.heldUntil(); healed != nil {
			select {
			case <-healed:
				continue
			case <-stub.Interrupt:
				return false
			}
		}
		due := c.Timestamp.Add(time.Duration(link.delay.Load()))
		if !clk.now().Before(due) {
			return true
		}
		clk.sleepUntil(due)
		// Check the cut again: it may have begun while waiting.
	}
}
