package domain

import (
	"testing"
	"time"
)

func TestStateAt(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	us1, us2, eu1 := Slot{0, 0}, Slot{0, 1}, Slot{1, 0}
	ttl := time.Hour
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	cases := []struct {
		name    string
		events  []PastEvent
		now     time.Time
		want    Slot
		present bool
	}{
		{"entered recently", []PastEvent{{EventEnter, us1, at(0)}}, at(30), us1, true},
		{"entered too long ago", []PastEvent{{EventEnter, us1, at(0)}}, at(61), Slot{}, false},
		{"moved", []PastEvent{{EventEnter, us1, at(0)}, {EventEnter, eu1, at(10)}}, at(30), eu1, true},
		{"left", []PastEvent{{EventEnter, us1, at(0)}, {EventLeave, us1, at(10)}}, at(30), Slot{}, false},
		{"stale leave keeps the player", []PastEvent{{EventEnter, us1, at(0)}, {EventLeave, us2, at(10)}}, at(30), us1, true},
		{"stale leave refreshes the TTL", []PastEvent{{EventEnter, us1, at(0)}, {EventLeave, us2, at(50)}}, at(100), us1, true},
		{"expired between events: a later stale leave does not revive", []PastEvent{{EventEnter, us1, at(0)}, {EventLeave, us2, at(70)}}, at(80), Slot{}, false},
		{"expired then entered again", []PastEvent{{EventEnter, us1, at(0)}, {EventEnter, us2, at(90)}}, at(100), us2, true},
		{"events after the instant are ignored", []PastEvent{{EventEnter, us1, at(0)}, {EventLeave, us1, at(40)}}, at(30), us1, true},
		{"heartbeats keep the player past the TTL", []PastEvent{{EventEnter, us1, at(0)}, {EventHeartbeat, us1, at(40)}, {EventHeartbeat, us1, at(80)}}, at(130), us1, true},
		{"heartbeat of another slot moves", []PastEvent{{EventEnter, us1, at(0)}, {EventHeartbeat, eu1, at(10)}}, at(30), eu1, true},
		{"heartbeat counts an unknown player in", []PastEvent{{EventHeartbeat, us2, at(0)}}, at(30), us2, true},
		{"heartbeat after leave counts in again", []PastEvent{{EventEnter, us1, at(0)}, {EventLeave, us1, at(10)}, {EventHeartbeat, us1, at(20)}}, at(30), us1, true},
		{"heartbeat after expiry counts in again", []PastEvent{{EventEnter, us1, at(0)}, {EventHeartbeat, us1, at(70)}}, at(80), us1, true},
		{"heartbeats stopped: expired", []PastEvent{{EventHeartbeat, us1, at(0)}, {EventHeartbeat, us1, at(20)}}, at(81), Slot{}, false},
		{"no events", nil, at(0), Slot{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slot, _, present := StateAt(c.events, c.now, ttl)
			if present != c.present || (present && slot != c.want) {
				t.Fatalf("got %v present=%v, want %v present=%v", slot, present, c.want, c.present)
			}
		})
	}
}
