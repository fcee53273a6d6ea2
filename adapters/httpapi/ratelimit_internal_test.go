package httpapi

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestKeyedLimiterIsBounded(t *testing.T) {
	const maxKeys = 1000
	k := newKeyedLimiter(1, 1, maxKeys)
	now := time.Now()
	for i := 0; i < 50*maxKeys; i++ {
		if ok, _ := k.allow("user-"+strconv.Itoa(i), now); !ok {
			t.Fatalf("a new key's first event was refused")
		}
	}
	// Rounded up per shard, never more.
	if n, limit := k.len(), limiterShards*((maxKeys+limiterShards-1)/limiterShards); n > limit {
		t.Fatalf("%d keys kept, bound %d", n, limit)
	}
}

func TestKeyedLimiterDropsIdleKeys(t *testing.T) {
	k := newKeyedLimiter(10, 5, 1000)
	if k.idle != minLimiterIdle {
		t.Fatalf("idle %v, want %v", k.idle, minLimiterIdle)
	}
	now := time.Now()
	for i := 0; i < 500; i++ {
		k.allow("old-"+strconv.Itoa(i), now)
	}
	// Adding keys later drops the idle ones of their shard.
	later := now.Add(2 * minLimiterIdle)
	for i := 0; i < 10*limiterShards; i++ {
		k.allow("new-"+strconv.Itoa(i), later)
	}
	if n := k.len(); n > 10*limiterShards {
		t.Fatalf("%d keys kept, idle ones not dropped", n)
	}
	// A slow rate keeps its keys until their bucket would have refilled.
	slow := newKeyedLimiter(0.001, 2, 1000)
	if want := 4000 * time.Second; slow.idle != want {
		t.Fatalf("idle %v, want %v", slow.idle, want)
	}
	if tiny := newKeyedLimiter(1e-300, 2, 10); tiny.idle != maxLimiterIdle {
		t.Fatalf("idle %v, want the cap %v", tiny.idle, maxLimiterIdle)
	}
}

func TestKeyedLimiterBucket(t *testing.T) {
	k := newKeyedLimiter(2, 3, 100)
	now := time.Now()
	for i := 0; i < 3; i++ {
		if ok, _ := k.allow("u", now); !ok {
			t.Fatalf("burst event %d refused", i)
		}
	}
	ok, wait := k.allow("u", now)
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("beyond the burst: %v %v; want refused, a token in 500ms", ok, wait)
	}
	// A refusal takes no token: one comes back after 500ms.
	if ok, _ := k.allow("u", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("no token after 500ms")
	}
	if ok, _ := k.allow("v", now); !ok {
		t.Fatal("another key was limited")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 90 * time.Second: 90, 1 << 62: 1<<31 - 1,
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	ps, err := parseProxies([]string{"10.0.0.0/8", "192.0.2.1", " ", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	h := func(vs ...string) [][]byte {
		var out [][]byte
		for _, v := range vs {
			out = append(out, []byte(v))
		}
		return out
	}
	for _, c := range []struct {
		remote    string
		forwarded [][]byte
		want      string
	}{
		{"198.51.100.1", h("203.0.113.1"), "198.51.100.1"},                // untrusted peer: header ignored
		{"192.0.2.1", nil, "192.0.2.1"},                                   // trusted peer, no header
		{"192.0.2.1", h("203.0.113.1"), "203.0.113.1"},                    // one proxy
		{"192.0.2.1", h("6.6.6.6, 203.0.113.1"), "203.0.113.1"},           // forged entry left of the real one
		{"192.0.2.1", h("6.6.6.6, 203.0.113.1, 10.9.9.9"), "203.0.113.1"}, // inner trusted proxy skipped
		{"192.0.2.1", h("6.6.6.6", "203.0.113.1"), "203.0.113.1"},         // several header lines: the last is the nearest
		{"192.0.2.1", h("10.1.1.1, 10.2.2.2"), "10.1.1.1"},                // only proxies: the farthest one
		{"192.0.2.1", h("garbage, 10.2.2.2"), "10.2.2.2"},                 // unparsable: the last trusted hop
		{"192.0.2.1", h("garbage"), "192.0.2.1"},
		{"::ffff:192.0.2.1", h("::ffff:203.0.113.1"), "203.0.113.1"}, // IPv4-mapped
		{"2001:db8::1", h("2001:4860::8888"), "2001:4860::8888"},
	} {
		if got := ps.clientAddr(a(c.remote), c.forwarded); got != a(c.want).Unmap() {
			t.Errorf("clientAddr(%s, %q) = %s, want %s", c.remote, c.forwarded, got, c.want)
		}
	}
	// Without trusted proxies the peer is the client.
	if got := (proxySet{}).clientAddr(a("192.0.2.1"), h("203.0.113.1")); got != a("192.0.2.1") {
		t.Errorf("no proxies: %s", got)
	}
	if _, err := parseProxies([]string{"10.0.0.0/8", "nope"}); err == nil {
		t.Error("parseProxies accepted a host name")
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.1":            "203.0.113.1",
		"::ffff:203.0.113.1":     "203.0.113.1",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::bad": "2001:db8:1:2::/64",
	} {
		if got := addrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("addrKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestBodyUserIDReadsLikeDecodeEvent(t *testing.T) {
	for body, want := range map[string]string{
		`{"user_id":1}`:                   "1",
		`{"user_id":"1"}`:                 "1",
		` {"user_id":"a"} `:               "a",
		`{"user_id":"a","user_id":"b"}`:   "b", // the last duplicate, as encoding/json
		`{"USER_ID":"c"}`:                 "c", // case-insensitive, as encoding/json
		`{"user_id":"x","User_Id":"d"}`:   "d",
		`{"event_payload":{"user_id":2}}`: "",
	} {
		got, err := bodyUserID([]byte(body))
		if want == "" {
			if err == nil {
				t.Errorf("%s: %q, want an error", body, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", body, got, err, want)
		}
	}
	for _, body := range []string{``, `[]`, `{"user_id":1} x`, `{"user_id":1}{}`, "{\"user_id\":\"\xff\"}", `{"user_id":-1}`, `{"user_id":1.5}`} {
		if got, err := bodyUserID([]byte(body)); err == nil {
			t.Errorf("%q: %q, want an error", body, got)
		}
	}
}
