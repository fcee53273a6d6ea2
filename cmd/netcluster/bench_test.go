package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestMaxGaugesReadsTheLargestLagOfEachGauge(t *testing.T) {
	text := `# HELP gamemodes_partition_durable_lag_seconds Age of the oldest event...
# TYPE gamemodes_partition_durable_lag_seconds gauge
gamemodes_partition_durable_lag_seconds{partition="0"} 0
gamemodes_partition_durable_lag_seconds{partition="1"} 0.25
gamemodes_partition_durable_lag_seconds{partition="12"} 1.5e-01
gamemodes_partition_durable_lag_events{partition="0"} 3
gamemodes_partition_durable_lag_events{partition="1"} 120
gamemodes_partition_durable_lag_seconds_total 99
gamemodes_partition_players{partition="1"} 5000
`
	s, e := maxGauges(strings.NewReader(text))
	if s != 0.25 || e != 120 {
		t.Errorf("maxGauges = %v s, %v events; want 0.25 and 120", s, e)
	}
	s, e = maxGauges(strings.NewReader("gamemodes_partition_players{partition=\"1\"} 5000\n"))
	if !math.IsNaN(s) || !math.IsNaN(e) {
		t.Errorf("without the gauges: %v, %v; want NaN (reported as n/a)", s, e)
	}
}

// series builds samples 100 ms apart from (events, players, lag) triples.
func series(t0 time.Time, rows [][3]float64) []sample {
	out := make([]sample, len(rows))
	for i, r := range rows {
		out[i] = sample{at: t0.Add(time.Duration(i) * 100 * time.Millisecond), events: uint64(r[0]), players: uint64(r[1]), lagS: r[2], lagE: r[2] * 10}
	}
	return out
}

func TestSummarizeSamplesFindsTheLoadAndTheCatchUp(t *testing.T) {
	nan := math.NaN()
	t0 := time.Unix(100, 0)
	// The load stores events from sample 1 to sample 4; the players stream
	// grows until sample 6 and then stays; the lag is last above 0 at sample 5.
	rows := [][3]float64{
		{0, 0, 0}, {100, 50, 0.1}, {200, 100, 0.2}, {300, 150, 0.4}, {400, 200, 0.3},
		{400, 260, 0.1}, {400, 300, 0}, {400, 300, 0}, {400, 300, 0}, {400, 300, 0},
	}
	var res result
	summarizeSamples(&res, series(t0, rows), 100*time.Millisecond, 300*time.Millisecond)
	if res.LoadS != 0.4 || res.EventsStored != 400 || res.PlayerWrites != 300 {
		t.Errorf("load %v s, %d events, %d player writes; want 0.4, 400, 300", res.LoadS, res.EventsStored, res.PlayerWrites)
	}
	// From sample 0 (before the first growth) to sample 4: 200 writes in 0.4 s.
	if res.PlayerWritesPerS != 500 {
		t.Errorf("player writes/s %v, want 500", res.PlayerWritesPerS)
	}
	if res.DurableLag == nil || res.DurableLag.Max != 0.4 || res.DurableLag.P50 != 0.2 {
		t.Errorf("durable lag %+v, want p50 0.2 max 0.4", res.DurableLag)
	}
	if res.CatchUpLagS == nil || *res.CatchUpLagS != 0.2 || res.CatchUpPlayersS == nil || *res.CatchUpPlayersS != 0.2 || !res.CaughtUp {
		t.Errorf("catch-up lag %v players %v caught up %v; want 0.2, 0.2, true", ptr(res.CatchUpLagS), ptr(res.CatchUpPlayersS), res.CaughtUp)
	}

	// Without the metric the lag is n/a; a players stream still growing at
	// the end is not caught up.
	rows = [][3]float64{{0, 0, nan}, {100, 50, nan}, {200, 100, nan}, {200, 150, nan}, {200, 200, nan}}
	res = result{}
	summarizeSamples(&res, series(t0, rows), 100*time.Millisecond, 300*time.Millisecond)
	if res.DurableLag != nil || res.CatchUpLagS != nil || res.CatchUpPlayersS != nil || res.CaughtUp {
		t.Errorf("got lag %+v, catch-up %v/%v, caught up %v; want n/a, not caught up", res.DurableLag, ptr(res.CatchUpLagS), ptr(res.CatchUpPlayersS), res.CaughtUp)
	}
}

func TestCaughtUpNeedsAQuietPlayersStreamAndNoLag(t *testing.T) {
	s := &sampler{}
	t0 := time.Unix(100, 0)
	quiet := 300 * time.Millisecond
	for _, tt := range []struct {
		name string
		rows [][3]float64
		want bool
	}{
		{"still growing", [][3]float64{{1, 1, 0}, {1, 2, 0}, {1, 3, 0}, {1, 4, 0}}, false},
		{"quiet for exactly the quiet time", [][3]float64{{1, 1, 0}, {1, 2, 0}, {1, 2, 0}, {1, 2, 0}, {1, 2, 0}}, true},
		{"quiet but not long enough", [][3]float64{{1, 1, 0}, {1, 2, 0}, {1, 2, 0}, {1, 2, 0}}, false},
		{"quiet with lag left", [][3]float64{{1, 2, 0}, {1, 2, 0}, {1, 2, 0}, {1, 2, 0}, {1, 2, 0.5}}, false},
		{"quiet, no metric", [][3]float64{{1, 2, math.NaN()}, {1, 2, math.NaN()}, {1, 2, math.NaN()}, {1, 2, math.NaN()}}, true},
	} {
		if got := s.caughtUp(series(t0, tt.rows), quiet); got != tt.want {
			t.Errorf("%s: caughtUp = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func ptr(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
