// Command loadgen drives a running gamemodes service with the seed's
// workload, checks that the lobby counts it exactly, and reports rates,
// latency percentiles, errors and freshness.
//
// # Usage
//
//	# HTTP ingest, closed loop: 64 workers as fast as they go for 60 s
//	go run ./cmd/loadgen --http-url http://127.0.0.1:8080 --concurrency 64 --duration 60s
//
//	# NATS-direct ingest (the game server path); lobby checked over HTTP
//	go run ./cmd/loadgen --mode nats --nats-url nats://127.0.0.1:4222 --http-url http://127.0.0.1:8080
//
//	# lobby reads only, as fast as possible (the truth is the lobby as read at the start)
//	go run ./cmd/loadgen --mode read --http-url http://127.0.0.1:8080 --duration 20s
//
//	# mixed, open loop: 3,000 operations/s, 2 GETs per POST, on a service that already has players
//	go run ./cmd/loadgen --mode mixed --rate 3000 --read-ratio 2 --baseline --http-url http://127.0.0.1:8080
//
// A progress line goes to stderr every second (elapsed, sent, acknowledged,
// rate, errors, p99 so far), then one line per region of the verification;
// the last line on stdout is a JSON summary (mode, duration_s, events_acked,
// rate, post/get latency percentiles in ms, freshness and read-your-writes
// percentiles, errors by status, verify result). The exit status is 1 when verification fails or
// the run cannot start, 2 for bad flags.
//
// # Workload
//
// --players simulated players each have a home region drawn from a Zipf-like
// distribution over --regions (--region-skew; a few big regions), and pick
// game modes from a Zipf-like distribution over --game-modes (--mode-skew).
// Each player is a small state machine: an absent player ENTERs a mode of
// their home region; a counted player moves to another mode (ENTER), leaves
// (--leave-ratio), travels to another region (--travel-ratio), sends a stale
// LEAVE for a mode they are not in (--stale-leave-ratio, must change
// nothing), sends a HEARTBEAT of the mode they are in (--heartbeat-ratio,
// changes no count), or drops: goes silent without LEAVE for the rest of the run
// (--drop-ratio). User ids are "<prefix><n>" with a prefix unique to the run,
// so runs never share players.
//
// Per-user order is kept: player n belongs to worker n mod --concurrency, and
// a player never has two events in flight (HTTP workers send one request at a
// time; NATS workers publish asynchronously, up to --max-pending
// acknowledgements outstanding in total, but never two for the same player).
// Every event has a unique event_id (Nats-Msg-Id on NATS). On 429, 503, 5xx,
// timeouts and connection errors the same event is retried with backoff (or
// after Retry-After), so a retry can never be applied twice; each failed
// attempt is counted in the errors map by status ("post:503", "nats:timeout").
// A 4xx other than 408 and 429 means nothing was stored: counted as rejected.
//
// Open loop (--rate R > 0): operation k is due at start + k/R whatever the
// service does; an operation started later than due is lag (lag_ms; over
// 10 ms counts in late_sends), and operations that were due but never
// started by the end are missed_sends. Closed loop (--rate 0): --concurrency
// workers go as fast as the service answers. The run ends after --duration
// or --events operations (GETs included in read and mixed modes), or at the
// first SIGINT; events in flight are then resolved before verification.
//
// # Ground truth and verification
//
// The loadgen keeps, for every player, where the service must count them:
// the effect of their acknowledged events only (202 or PubAck), by the
// contract's semantics (ENTER and HEARTBEAT count in or move, LEAVE removes only from the
// current slot, a stale LEAVE changes nothing). After the run it reads
// GET /api/v1/popular_game_modes for every region (this needs --http-url in
// nats mode too) every 100 ms until every list equals the truth or --settle
// has passed, prints each region as ok or MISMATCH with the differing modes,
// and fails the run on a mismatch. --no-verify skips this.
//
// The truth assumes a fresh service; --baseline reads the lobby first and
// adds it (correct as long as nobody else writes during the run). Read mode
// always uses the baseline: the lobby must stay as it was.
//
// Dropped players stay counted in the truth: that is right while the run
// plus --settle is shorter than the service's --player-ttl (1 h by default),
// because the service only expires them after the TTL. To test expiry, pass
// the service's TTL as --player-ttl: a player silent for the TTL may then be
// gone and one silent for TTL + --expiry-slack must be gone, so counts are
// checked against a range (the report says exact=false) until every player
// is clearly on one side; give a --settle longer than TTL + slack to reach
// that. Do not combine --player-ttl with --baseline: the baseline's players
// expire too. An event that was never acknowledged within
// --retry-for leaves its player uncertain (counted in either state) and
// unused for the rest of the run; keep --retry-for below the service's
// --dedup-window so retries stay idempotent.
//
// # Freshness
//
// Freshness is measured by a probe, not by sampling workload events, because
// a count that thousands of players change at once cannot tell which change
// became visible. The workload never uses one slot: the least popular
// region's least popular game mode (the last of --regions and of
// --game-modes). Every --freshness-every a dedicated probe player enters or
// leaves that slot (over NATS in nats mode, else HTTP); after the
// acknowledgement the probe reads that region's lobby list every millisecond
// until the slot shows the expected count, and records acknowledgement to
// the end of the first GET showing it (an upper bound, within about one GET)
// in its own histogram. A change not visible within 5 s counts as a timeout.
// The probe player is part of the ground truth.
//
// # Read your writes
//
// With --ryw-every D (needs --http-url, in any mode that writes), every D a
// second probe POSTs an ENTER over HTTP for one of 64 probe players (all in
// the most popular region's most popular mode, where they stay: part of the
// ground truth), then GETs that region's lobby list with
// after=<consistency_token>, and records the time from the 202 to the
// answer (ryw_ms in the summary). An answer 504 means the service did not
// reflect the event within its --consistency-wait: a timeout, counted in
// ryw_ms.timeouts and not in the latencies.
//
// # Service CPU
//
// --cpu-pids (the gamemodes process: its embedded NATS server included) and
// --cpu-postgres (a Postgres server's pid, with its children; with
// --cpu-postgres-db only the backends of that database plus the server's
// background processes) name the service's processes: the summary then has
// "cpu", their user and system time from /proc during the send phase, in
// total and per acknowledged event, by process group, with the load
// generator's own CPU and the machine's load average beside it, and
// "cpu_after", from the end of sending to the end of verification.
// `loadgen cpu --cpu-pids ... --duration 30s` measures the same with no load
// (the idle cost), and `loadgen cost-table DIR` turns the files of
// scripts/bench.sh cost into a markdown table.
//
// Latencies come from HDR histograms (1 us to 60 s, 3 significant digits):
// POST (publish in nats mode) and GET separately, successful attempts only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(mainExit(os.Args[1:])) }

// mainExit runs the command and returns its exit status.
func mainExit(args []string) int {
	if len(args) > 0 && args[0] == "populate" {
		return populate(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "cost-table" {
		return costTableCommand(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "cpu" {
		return cpuCommand(args[1:], os.Stdout, os.Stderr)
	}
	cfg, err := parseConfig(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { // a second signal aborts at once
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		os.Exit(130)
	}()
	sum, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	line, _ := json.Marshal(sum)
	fmt.Println(string(line))
	if sum.Verify.Result == "fail" {
		return 1
	}
	return 0
}
