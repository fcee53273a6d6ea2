package lobby

import (
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// DefaultBroadcastInterval is the least time between two updates of the
// lobby lists handed to subscribers.
const DefaultBroadcastInterval = 100 * time.Millisecond

// Update is a region's lobby list at a version.
type Update struct {
	// Region is the region's name.
	Region string
	// Version increases with every change of the region's list (see
	// View.Snapshot).
	Version uint64
	// List is the encoded answer of GET /api/v1/popular_game_modes for the
	// region; it must not be modified.
	List []byte
}

// Broadcaster hands the lobby lists of the regions that changed to their
// subscribers, coalesced: one goroutine waits for a change of the view and
// then, at most once per interval, takes the latest list of every region
// whose version moved and offers it to that region's subscribers. Each
// subscription keeps only the latest list of a region (a slot, not a
// queue), so a subscriber that does not keep up skips intermediate lists
// and never holds up the broadcaster or other subscribers, and a list is
// never followed by an older one.
type Broadcaster struct {
	view     *View
	interval time.Duration

	mu       sync.Mutex
	byRegion []map[*Subscription]struct{} // subscribers of one region, by region index
	all      map[*Subscription]struct{}   // subscribers of every region
	stopped  bool

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// NewBroadcaster returns a broadcaster over v sending at most one update
// per region per interval (DefaultBroadcastInterval when interval <= 0).
// Nothing is sent before Start.
func NewBroadcaster(v *View, interval time.Duration) *Broadcaster {
	if interval <= 0 {
		interval = DefaultBroadcastInterval
	}
	b := &Broadcaster{
		view: v, interval: interval,
		byRegion: make([]map[*Subscription]struct{}, v.catalog.NumRegions()),
		all:      map[*Subscription]struct{}{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for r := range b.byRegion {
		b.byRegion[r] = map[*Subscription]struct{}{}
	}
	return b
}

// Start runs the broadcaster in the background until Stop.
func (b *Broadcaster) Start() {
	b.startOnce.Do(func() { go b.run() })
}

// Stop ends the broadcaster and every subscription (their Done channels
// close); later subscriptions are born done. It waits for the broadcasting
// goroutine when it was started.
func (b *Broadcaster) Stop() {
	b.stopOnce.Do(func() {
		close(b.stop)
		started := true
		b.startOnce.Do(func() { started = false })
		if started {
			<-b.done
		}
		b.mu.Lock()
		b.stopped = true
		subs := make([]*Subscription, 0, len(b.all))
		for s := range b.all {
			subs = append(subs, s)
		}
		for _, m := range b.byRegion {
			for s := range m {
				subs = append(subs, s)
			}
		}
		b.mu.Unlock()
		for _, s := range subs {
			s.Close()
		}
	})
}

// Synced reports whether the view has loaded every stored shard.
func (b *Broadcaster) Synced() bool { return b.view.Synced() }

// Current returns every region's list as it is now, with its version, by
// region index.
func (b *Broadcaster) Current() []Update {
	cat := b.view.catalog
	out := make([]Update, cat.NumRegions())
	for r := range out {
		list, version := b.view.Snapshot(r)
		out[r] = Update{Region: cat.Region(r), Version: version, List: list}
	}
	return out
}

func (b *Broadcaster) run() {
	defer close(b.done)
	cat := b.view.catalog
	sent := make([]uint64, cat.NumRegions()) // version last offered, by region index
	var versions []uint64
	var last time.Time // when lists were last offered
	timer := time.NewTimer(b.interval)
	timer.Stop()
	for {
		// Taken before reading the versions: a change after the read
		// closes this channel.
		changed := b.view.Changed()
		versions = b.view.Versions(versions[:0])
		offered := false
		for r, ver := range versions {
			if ver == sent[r] {
				continue
			}
			list, ver := b.view.Snapshot(r)
			b.offer(r, Update{Region: cat.Region(r), Version: ver, List: list})
			sent[r] = ver
			offered = true
		}
		if offered {
			last = time.Now()
		}
		select {
		case <-b.stop:
			return
		case <-changed:
		}
		if wait := b.interval - time.Since(last); wait > 0 {
			timer.Reset(wait)
			select {
			case <-b.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
		}
	}
}

// offer hands u, the list of region index r, to its subscribers.
func (b *Broadcaster) offer(r int, u Update) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.byRegion[r] {
		s.offer(0, u)
	}
	for s := range b.all {
		s.offer(r, u)
	}
}

// Subscribe follows one region: the subscription holds the region's
// current list at once, then each later list the broadcaster sends. It
// returns a *domain.ValidationError for a missing or unknown region.
// Close the subscription when done.
func (b *Broadcaster) Subscribe(region string) (*Subscription, error) {
	if region == "" {
		return nil, &domain.ValidationError{Code: domain.CodeMissingRegion, Message: "query parameter region is required"}
	}
	r, ok := b.view.catalog.RegionIndex(region)
	if !ok {
		return nil, &domain.ValidationError{Code: domain.CodeInvalidRegion, Message: "unknown region"}
	}
	s := newSubscription(b, []int{r})
	b.register(s, b.byRegion[r])
	return s, nil
}

// SubscribeAll follows every region: the subscription holds every region's
// current list at once, then each later list the broadcaster sends. Close
// it when done.
func (b *Broadcaster) SubscribeAll() *Subscription {
	regions := make([]int, b.view.catalog.NumRegions())
	for r := range regions {
		regions[r] = r
	}
	s := newSubscription(b, regions)
	b.register(s, b.all)
	return s
}

// register adds s to set, then gives it the current lists: a change after
// the snapshot is offered by the broadcaster, which s now receives.
func (b *Broadcaster) register(s *Subscription, set map[*Subscription]struct{}) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		s.Close()
		return
	}
	set[s] = struct{}{}
	s.set = set
	b.mu.Unlock()
	for i, r := range s.regions {
		list, ver := b.view.Snapshot(r)
		s.offer(i, Update{Region: b.view.catalog.Region(r), Version: ver, List: list})
	}
}

// Subscription is a subscriber's slot per followed region: the latest
// list not taken yet. Wait on Ready, then take the lists with Next until it
// reports none.
type Subscription struct {
	b       *Broadcaster
	regions []int                      // region indexes followed, by slot
	set     map[*Subscription]struct{} // the broadcaster's set holding s (guarded by b.mu)
	ready   chan struct{}
	done    chan struct{}

	mu     sync.Mutex
	slots  []slot
	closed bool
}

type slot struct {
	update  Update
	pending bool   // update not taken yet
	offered bool   // some update was offered
	last    uint64 // version last offered
}

func newSubscription(b *Broadcaster, regions []int) *Subscription {
	return &Subscription{b: b, regions: regions, slots: make([]slot, len(regions)),
		ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// offer puts u in slot i unless that slot was offered a version as recent.
func (s *Subscription) offer(i int, u Update) {
	s.mu.Lock()
	if s.closed || (s.slots[i].offered && u.Version <= s.slots[i].last) {
		s.mu.Unlock()
		return
	}
	sl := &s.slots[i]
	sl.update, sl.pending, sl.offered, sl.last = u, true, true, u.Version
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready receives a value when Next has something to take.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Done is closed when the subscription ends (Close, or the broadcaster
// stopped).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Next takes the latest list not taken yet of a followed region (the
// lowest region index first), or reports false when there is none.
func (s *Subscription) Next() (Update, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.slots {
		if sl := &s.slots[i]; sl.pending {
			u := sl.update
			sl.update, sl.pending = Update{}, false
			return u, true
		}
	}
	return Update{}, false
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.slots = nil
	s.mu.Unlock()
	close(s.done)
	s.b.mu.Lock()
	if s.set != nil {
		delete(s.set, s)
	}
	s.b.mu.Unlock()
}
