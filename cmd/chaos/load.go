package main

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// load is the checked workload of a run: senders over HTTP (the edges) and
// NATS-direct, each the only sender of its players, retrying each event
// under the same event_id; one HTTP sender also reads its writes back with
// their consistency tokens.
type load struct {
	cat     *domain.Catalog
	pop     *workload.Population
	runID   string
	web     []*workload.HTTPTarget // one per edge
	bus     *workload.NATSTarget
	faults  *atomic.Int32 // faults active now
	retry   time.Duration
	timeout time.Duration
	seq     atomic.Int64
	stats   stats
	senders []*sender

	mu          sync.Mutex // guards the read-your-writes figures
	tokens      []string   // a sample of the tokens answered during the run
	rywTries    int64
	rywAnswered int64
	rywTimeouts int64
	rywErrors   int64
}

// sender sends the events of its players, one at a time.
type sender struct {
	id         int
	web        *workload.HTTPTarget // nil: NATS-direct
	ryw        bool
	players    *workload.Shard
	rng        *rand.Rand
	acked      []string // event ids acknowledged
	unresolved []string // event ids never acknowledged
	rejected   int
}

// stats are the publish figures, split by whether a fault was active.
type stats struct {
	mu                sync.Mutex
	latCalm, latFault []time.Duration
	errCalm, errFault map[string]int64
	retries           int64
	duplicates        int64
}

func (s *stats) fail(key string, fault bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &s.errCalm
	if fault {
		m = &s.errFault
	}
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[key]++
}

func (s *stats) acked(d time.Duration, fault bool, retries int, dup bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fault {
		s.latFault = append(s.latFault, d)
	} else {
		s.latCalm = append(s.latCalm, d)
	}
	s.retries += int64(retries)
	if dup {
		s.duplicates++
	}
}

// latencySummary is a latency distribution in milliseconds.
type latencySummary struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func summarizeLatency(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return latencySummary{N: len(s), P50: ms(q(0.5)), P99: ms(q(0.99)), Max: ms(s[len(s)-1])}
}

// newLoad builds the workload: players split over senders, every other
// sender on HTTP (alternating edges), the others on NATS; the last HTTP
// sender reads its writes back.
func newLoad(cat *domain.Catalog, pop *workload.Population, runID string, web []*workload.HTTPTarget, bus *workload.NATSTarget,
	faults *atomic.Int32, senders int, seed uint64) *load {
	l := &load{cat: cat, pop: pop, runID: runID, web: web, bus: bus, faults: faults, retry: time.Minute, timeout: 5 * time.Second}
	shards := workload.NewShards(pop.Len(), senders)
	for k := range senders {
		s := &sender{id: k, players: shards[k], rng: rand.New(rand.NewPCG(seed, uint64(k)+1))}
		if k%2 == 0 {
			s.web = web[(k/2)%len(web)]
		}
		l.senders = append(l.senders, s)
	}
	for k := len(l.senders) - 1; k >= 0; k-- {
		if l.senders[k].web != nil {
			l.senders[k].ryw = true
			break
		}
	}
	return l
}

// eventID names the next event of the run.
func (l *load) eventID() string { return l.runID + "-" + strconv.FormatInt(l.seq.Add(1), 36) }

// send delivers one planned event through web (nil: NATS), retrying under
// the same event_id, and applies the outcome to the ground truth (at the
// time of the first attempt: the earliest the service may have stored it).
// It returns the outcome, the consistency token when asked for one, and the
// time of the first attempt.
func (l *load) send(s *sender, web *workload.HTTPTarget, pe workload.Planned, wantToken bool) (workload.Outcome, string, time.Time) {
	id := l.eventID()
	user := l.pop.UserID(pe.Player)
	region := l.cat.Region(int(pe.Slot.Region))
	first := time.Now()
	body := workload.AppendEventJSON(make([]byte, 0, 192), id, user, pe.Type, region, l.cat.GameMode(int(pe.Slot.Mode)), first.UnixMilli())
	inFault := l.faults.Load() > 0
	fail := func(key string) { l.stats.fail(key, inFault || l.faults.Load() > 0) }
	var res workload.Sent
	if web != nil {
		res = web.PostUntil(body, l.retry, wantToken, fail)
	} else {
		msg := workload.Message(topology.EventSubject(region, domain.UserToken(user)), id, body)
		res = l.bus.PublishUntil(msg, l.retry, l.timeout, fail)
	}
	switch res.Outcome {
	case workload.Acked:
		l.stats.acked(res.At.Sub(first), inFault || l.faults.Load() > 0, res.Retries, res.Duplicate)
		s.acked = append(s.acked, id)
	case workload.Unresolved:
		s.unresolved = append(s.unresolved, id)
	case workload.Rejected:
		s.rejected++
	}
	return res.Outcome, res.Token, first
}

// run sends events, one per ticket, until tickets closes or the sender's
// players have all dropped.
func (l *load) run(s *sender, tickets <-chan struct{}) {
	for range tickets {
		pe, ok := l.next(s)
		if !ok {
			return
		}
		res, token, first := l.send(s, s.web, pe, s.ryw)
		switch res {
		case workload.Acked:
			l.pop.Ack(pe, first)
			if s.ryw {
				l.readYourWrite(s.web, pe, token)
			}
		case workload.Unresolved:
			l.pop.Unresolved(pe, first)
		}
	}
}

// next plans the next event of one of the sender's usable players.
func (l *load) next(s *sender) (workload.Planned, bool) {
	for len(s.players.Live) > 0 {
		pos, i := s.players.Pick(s.rng)
		if !l.pop.Usable(i) {
			s.players.Remove(pos)
			continue
		}
		if pe, ok := l.pop.Plan(s.rng, i); ok {
			return pe, true
		}
		s.players.Remove(pos) // dropped: silent from now on
	}
	return workload.Planned{}, false
}

// readYourWrite reads the event's region with its consistency token and
// keeps a sample of the tokens for the final check.
func (l *load) readYourWrite(web *workload.HTTPTarget, pe workload.Planned, token string) {
	l.mu.Lock()
	l.rywTries++
	l.mu.Unlock()
	if token == "" {
		l.mu.Lock()
		l.rywErrors++
		l.mu.Unlock()
		return
	}
	region := l.cat.Region(int(pe.Slot.Region))
	status, _, err := web.Get(url.QueryEscape(region)+"&after="+url.QueryEscape(token), false)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil && status == 200:
		l.rywAnswered++
	case err == nil && status == 504:
		l.rywTimeouts++
	default:
		l.rywErrors++
	}
	if len(l.tokens) < 2000 {
		l.tokens = append(l.tokens, region+"\x00"+token)
	}
}

// ids returns every acknowledged and every unresolved event id.
func (l *load) ids() (acked, unresolved []string, rejected int) {
	for _, s := range l.senders {
		acked = append(acked, s.acked...)
		unresolved = append(unresolved, s.unresolved...)
		rejected += s.rejected
	}
	return acked, unresolved, rejected
}

// keep sends, for every player that needs it, the event that keeps them
// where the model counts them (or makes an uncertain one certain; see
// Population.Keep): players not acknowledged for at least every, and all
// uncertain ones. It uses 16 goroutines and returns when all are sent.
func (l *load) keep(keeper *sender, every time.Duration) (sent, failed int) {
	now := time.Now()
	var due []workload.Planned
	for i := range l.pop.Len() {
		pe, ok := l.pop.Keep(keeper.rng, i)
		if !ok {
			continue
		}
		if l.pop.Usable(i) && now.Sub(l.pop.LastAck(i)) < every {
			continue
		}
		due = append(due, pe)
	}
	var wg sync.WaitGroup
	var fails atomic.Int64
	work := make(chan workload.Planned)
	var mu sync.Mutex
	for g := range 16 {
		wg.Go(func() {
			s := &sender{id: -1 - g}
			for pe := range work {
				var web *workload.HTTPTarget
				if pe.Player%2 == 0 {
					web = l.web[(pe.Player/2)%len(l.web)]
				}
				res, _, first := l.send(s, web, pe, false)
				if res == workload.Acked {
					l.pop.Resolve(pe, first)
				} else {
					fails.Add(1)
				}
			}
			mu.Lock()
			keeper.acked = append(keeper.acked, s.acked...)
			keeper.unresolved = append(keeper.unresolved, s.unresolved...)
			keeper.rejected += s.rejected
			mu.Unlock()
		})
	}
	for _, pe := range due {
		work <- pe
	}
	close(work)
	wg.Wait()
	return len(due), int(fails.Load())
}

// urlEscape escapes a query value.
func urlEscape(s string) string { return url.QueryEscape(s) }
