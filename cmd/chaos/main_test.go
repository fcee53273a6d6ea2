package main

import (
	"io"
	"strings"
	"testing"
)

// The summary's command replays the run: the flags given, and the seed
// drawn when none was given.
func TestCommandReplaysTheRun(t *testing.T) {
	o, err := parseOptions([]string{"--duration", "15m", "--seed", "1001", "--rate", "150"}, io.Discard)
	if err != nil || o.command != "go run ./cmd/chaos --duration 15m --seed 1001 --rate 150" {
		t.Fatalf("%q, %v", o.command, err)
	}
	o, err = parseOptions([]string{"--duration", "2m"}, io.Discard)
	if err != nil || o.seed == 0 || !strings.HasSuffix(o.command, " --seed "+itoa(int(o.seed))) {
		t.Fatalf("random seed: %q (seed %d), %v", o.command, o.seed, err)
	}
	if _, err := parseOptions([]string{"--senders", "1"}, io.Discard); err == nil {
		t.Fatal("one sender accepted")
	}
}
