package httpapi

import (
	"bufio"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// PathPopularStream streams the lobby list of a region as Server-Sent Events
// (GET, query parameter region).
const PathPopularStream = "/api/v1/popular_game_modes/stream"

// Defaults of the lobby streams.
const (
	// DefaultMaxStreams is the default cap on open lobby streams.
	DefaultMaxStreams = 10_000
	// DefaultStreamPingInterval is the default time without a message
	// after which a stream sends a comment, so that proxies keep it open.
	DefaultStreamPingInterval = 15 * time.Second
	// ContentTypeEventStream is the media type of the lobby streams.
	ContentTypeEventStream = "text/event-stream"
)

// streamShutdownGrace is how long a stream may still write (its end, or
// what it had queued for a client that reads slowly) once the server shuts
// down.
const streamShutdownGrace = time.Second

// LobbyStreams follows the lobby list of a region: the subscription holds
// the current list at once and then each change, coalesced, never an older
// list after a newer one. It returns a *domain.ValidationError for a
// missing or unknown region. *lobby.Broadcaster implements it.
type LobbyStreams interface {
	Subscribe(region string) (*lobby.Subscription, error)
}

var (
	errTooManyStreams = &apiError{status: fiber.StatusServiceUnavailable, code: CodeOverloaded, message: "too many open streams, retry later"}
	pingComment       = []byte(": ping\n\n")
)

// openStream is one lobby stream being served: its connection, whose
// write deadline it moves before each write.
type openStream struct {
	conn net.Conn
	quit chan struct{} // closed at shutdown

	mu     sync.Mutex
	closed bool
}

// arm gives the next write d to complete; false once the server shuts down.
func (st *openStream) arm(d time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	if st.conn != nil {
		_ = st.conn.SetWriteDeadline(time.Now().Add(d))
	}
	return true
}

// end makes the stream stop; a write blocked on a client that does not
// read fails within streamShutdownGrace.
func (st *openStream) end() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	st.closed = true
	close(st.quit)
	if st.conn != nil {
		_ = st.conn.SetWriteDeadline(time.Now().Add(streamShutdownGrace))
	}
}

// streamSet holds the open streams: the cap, the gauge and the shutdown.
type streamSet struct {
	max int // <= 0: no cap

	mu       sync.Mutex
	open     map[*openStream]struct{}
	stopping bool
}

func newStreamSet(max int, reg prometheus.Registerer, log *slog.Logger) *streamSet {
	set := &streamSet{max: max, open: map[*openStream]struct{}{}}
	if reg != nil {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gamemodes_http_open_streams",
			Help: "Lobby streams (Server-Sent Events of " + PathPopularStream + ") open now.",
		}, func() float64 { return float64(set.len()) })); err != nil {
			log.Error("httpapi: register metrics", "err", err)
		}
	}
	return set
}

func (set *streamSet) len() int {
	set.mu.Lock()
	defer set.mu.Unlock()
	return len(set.open)
}

// add registers st, or refuses it when the cap is reached or the server is
// shutting down.
func (set *streamSet) add(st *openStream) error {
	set.mu.Lock()
	defer set.mu.Unlock()
	switch {
	case set.stopping:
		return errShuttingDown
	case set.max > 0 && len(set.open) >= set.max:
		return errTooManyStreams
	}
	set.open[st] = struct{}{}
	return nil
}

func (set *streamSet) remove(st *openStream) {
	set.mu.Lock()
	delete(set.open, st)
	set.mu.Unlock()
}

// shutdown refuses new streams and ends the open ones.
func (set *streamSet) shutdown() {
	set.mu.Lock()
	defer set.mu.Unlock()
	set.stopping = true
	for st := range set.open {
		st.end()
	}
}

// getPopularStream answers 400 for a missing or unknown region and 503 when
// the streams cap is reached or the server is shutting down; otherwise it
// streams the region's list as Server-Sent Events: the current list at
// once, then every change (coalesced by the broadcaster), each message
// "id: <version>\ndata: <the JSON of GET popular_game_modes>\n\n", and a
// comment line when nothing was sent for StreamPingInterval.
func (s *Server) getPopularStream(c *fiber.Ctx) error {
	sub, err := s.streams.Subscribe(c.Query("region"))
	if err != nil {
		return err
	}
	st := &openStream{conn: c.Context().Conn(), quit: make(chan struct{})}
	if err := s.openStreams.add(st); err != nil {
		sub.Close()
		if err == errTooManyStreams {
			s.metrics.refuse(reasonTooManyStreams)
		}
		return err
	}
	c.Set(fiber.HeaderContentType, ContentTypeEventStream)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if c.Method() == fiber.MethodHead {
		sub.Close()
		s.openStreams.remove(st)
		return nil
	}
	// fasthttp runs the writer in its own goroutine once the handler
	// returns; a failed write or flush means the client left (or could not
	// take a write for WriteTimeout).
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.openStreams.remove(st)
		defer sub.Close()
		s.serveStream(w, st, sub)
	})
	return nil
}

// serveStream writes the subscription's lists until the client leaves, the
// subscription ends or the server shuts down.
func (s *Server) serveStream(w *bufio.Writer, st *openStream, sub *lobby.Subscription) {
	ping := time.NewTimer(s.cfg.StreamPingInterval)
	defer ping.Stop()
	var buf []byte
	for {
		for u, ok := sub.Next(); ok; u, ok = sub.Next() {
			buf = append(buf[:0], "id: "...)
			buf = strconv.AppendUint(buf, u.Version, 10)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, u.List...)
			buf = append(buf, "\n\n"...)
			if !s.writeStream(w, st, buf) {
				return
			}
			ping.Reset(s.cfg.StreamPingInterval)
		}
		select {
		case <-sub.Ready():
		case <-ping.C:
			if !s.writeStream(w, st, pingComment) {
				return
			}
			ping.Reset(s.cfg.StreamPingInterval)
		case <-sub.Done():
			return
		case <-st.quit:
			return
		}
	}
}

// writeStream writes and flushes b within WriteTimeout; false when the
// stream must end.
func (s *Server) writeStream(w *bufio.Writer, st *openStream, b []byte) bool {
	if !st.arm(s.cfg.WriteTimeout) {
		return false
	}
	if _, err := w.Write(b); err != nil {
		return false
	}
	return w.Flush() == nil
}
