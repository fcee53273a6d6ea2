package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestWithinChecksEveryModeAgainstItsBounds(t *testing.T) {
	if !within(map[int]int64{1: 1, 2: 1}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) ||
		!within(map[int]int64{1: 2}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) ||
		within(map[int]int64{1: 3}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) ||
		within(map[int]int64{}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) {
		t.Error("within is wrong")
	}
}

func TestMixedTicketsKeepTheReadRatio(t *testing.T) {
	for _, ratio := range []float64{0, 0.5, 1, 2, 3} {
		posts := 0
		const n = 3000
		for k := range int64(n) {
			if !opIsRead(k, ratio) {
				posts++
			}
		}
		if want := float64(n) / (1 + ratio); math.Abs(float64(posts)-want) > 1 {
			t.Errorf("ratio %v: %d posts of %d, want %.0f", ratio, posts, n, want)
		}
	}
}

func TestPacerStopsAtTheLimit(t *testing.T) {
	stop := make(chan struct{})
	p := newPacer(0, 0, 5, stop)
	timer := newStoppedTimer()
	n := 0
	for {
		if _, _, ok := p.take(timer); !ok {
			break
		}
		n++
	}
	if n != 5 || p.taken.Load() != 5 {
		t.Errorf("handed out %d tickets (taken %d), want 5", n, p.taken.Load())
	}
	open := newPacer(1e6, 0, 100, stop)
	for {
		_, lag, ok := open.take(timer)
		if !ok {
			break
		}
		if lag < 0 {
			t.Fatalf("negative lag %v", lag)
		}
	}
	if open.taken.Load() != 100 || open.missed() != 0 {
		t.Errorf("open loop: taken %d missed %d", open.taken.Load(), open.missed())
	}
	close(stop)
	if _, _, ok := newPacer(0, time.Hour, 0, stop).take(timer); ok {
		t.Error("a stopped pacer handed out a ticket")
	}
}

func TestConfigValidation(t *testing.T) {
	var out strings.Builder
	if _, err := parseConfig([]string{"--http-url", "http://127.0.0.1:1"}, &out); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, args := range [][]string{
		{"--mode", "http"},
		{"--mode", "nats", "--nats-url", "nats://127.0.0.1:1"},
		{"--mode", "bogus", "--http-url", "http://127.0.0.1:1"},
		{"--http-url", "http://127.0.0.1:1", "--leave-ratio", "0.9", "--drop-ratio", "0.2"},
		{"--http-url", "http://127.0.0.1:1", "--user-prefix", "a b"},
		{"--http-url", "http://127.0.0.1:1", "--duration", "0"},
		{"--http-url", "ftp://x"},
	} {
		if _, err := parseConfig(args, &out); err == nil {
			t.Errorf("accepted %v", args)
		}
	}
	if c, err := parseConfig([]string{"--mode", "nats", "--nats-url", "nats://127.0.0.1:1", "--no-verify"}, &out); err != nil || c.verify {
		t.Errorf("nats without http-url and --no-verify: %v verify=%v", err, c.verify)
	}
}
