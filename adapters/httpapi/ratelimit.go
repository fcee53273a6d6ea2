package httpapi

import (
	"container/list"
	"hash/maphash"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiterShards is the number of independently locked parts of a keyedLimiter.
const limiterShards = 64

// minLimiterIdle is the shortest time a key's limiter is kept unused.
const minLimiterIdle = time.Minute

// maxLimiterIdle is the longest time a key's limiter is kept unused.
const maxLimiterIdle = 24 * time.Hour

// keyedLimiter holds one token bucket per key (a user id or a client
// address) in a bounded, sharded LRU: a shard evicts its least recently used
// key when full, and drops keys idle for longer than idle (by then their
// bucket has refilled, so a fresh one is the same) whenever it adds a key.
// Memory is therefore bounded by maxKeys whatever the traffic; a key evicted
// while still active gets a fresh (full) bucket, the price of the bound.
type keyedLimiter struct {
	limit    rate.Limit
	burst    int
	idle     time.Duration
	perShard int
	seed     maphash.Seed
	shards   [limiterShards]limiterShard
}

type limiterShard struct {
	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *limiterEntry, most recently used first
}

type limiterEntry struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

// newKeyedLimiter returns a limiter of perSecond events per key with bursts
// of burst (at least 1), keeping at most about maxKeys keys.
func newKeyedLimiter(perSecond float64, burst, maxKeys int) *keyedLimiter {
	if burst < 1 {
		burst = 1
	}
	idle := minLimiterIdle
	// A bucket refills completely in burst/perSecond: keep keys at least
	// twice that, so that dropping an idle key never grants more than its
	// own bucket would have.
	// (capped at a day: the key bound limits memory anyway).
	if refill := 2 * float64(burst) / perSecond; refill > idle.Seconds() {
		idle = time.Duration(min(refill, maxLimiterIdle.Seconds()) * float64(time.Second))
	}
	k := &keyedLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		idle:     idle,
		perShard: max(1, (maxKeys+limiterShards-1)/limiterShards),
		seed:     maphash.MakeSeed(),
	}
	for i := range k.shards {
		k.shards[i].m = make(map[string]*list.Element)
	}
	return k
}

// allow takes one token of key's bucket at now. When the bucket is empty it
// takes nothing and returns false and how long until a token is available.
func (k *keyedLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	lim := k.limiter(key, now)
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (k *keyedLimiter) limiter(key string, now time.Time) *rate.Limiter {
	s := &k.shards[maphash.String(k.seed, key)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.m[key]; ok {
		e := el.Value.(*limiterEntry)
		e.last = now
		s.lru.MoveToFront(el)
		return e.lim
	}
	// Drop the keys idle for too long, oldest first, then make room.
	for back := s.lru.Back(); back != nil; back = s.lru.Back() {
		e := back.Value.(*limiterEntry)
		if now.Sub(e.last) < k.idle && s.lru.Len() < k.perShard {
			break
		}
		s.lru.Remove(back)
		delete(s.m, e.key)
	}
	e := &limiterEntry{key: key, lim: rate.NewLimiter(k.limit, k.burst), last: now}
	s.m[key] = s.lru.PushFront(e)
	return e.lim
}

// len returns the number of keys held.
func (k *keyedLimiter) len() int {
	n := 0
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1, for a
// Retry-After header.
func retryAfterSeconds(d time.Duration) int {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		return 1
	}
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(s)
}

// proxySet is a set of trusted proxy addresses and ranges.
type proxySet struct {
	prefixes []netip.Prefix
}

// parseProxies parses addresses ("10.0.0.1", "::1") and CIDR ranges
// ("10.0.0.0/8") of trusted proxies.
func parseProxies(entries []string) (proxySet, error) {
	var ps proxySet
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return proxySet{}, &net.ParseError{Type: "trusted proxy CIDR range", Text: e}
			}
			ps.prefixes = append(ps.prefixes, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return proxySet{}, &net.ParseError{Type: "trusted proxy IP address", Text: e}
		}
		a = a.Unmap()
		ps.prefixes = append(ps.prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps, nil
}

func (ps proxySet) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the client's address seen through trusted proxies:
// remote is the peer's address and forwarded the X-Forwarded-For header
// values in order. When the peer is a trusted proxy, the header is read from
// right to left (each proxy appends the address it received from) and the
// first address that is not a trusted proxy is the client: the entries left
// of it were written by the client and can be forged. An unparsable entry
// stops the walk at the last trusted hop.
func (ps proxySet) clientAddr(remote netip.Addr, forwarded [][]byte) netip.Addr {
	addr := remote.Unmap()
	if len(ps.prefixes) == 0 || !ps.contains(addr) {
		return addr
	}
	for i := len(forwarded) - 1; i >= 0; i-- {
		hops := strings.Split(string(forwarded[i]), ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				return addr
			}
			addr = hop.Unmap()
			if !ps.contains(addr) {
				return addr
			}
		}
	}
	return addr
}

// addrKey is the rate limit key of a client address: the address itself for
// IPv4, its /64 network for IPv6 (one host usually holds a whole /64).
func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
