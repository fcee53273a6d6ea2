package main

import (
	"encoding/json"
	"fmt"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// fakeEdge answers POST /api/v1/event with a fresh consistency token, and a
// read with after=<token> with the status its script gives for that read
// (200 when the script is exhausted); it records what it was sent.
type fakeEdge struct {
	mu      sync.Mutex
	script  []int // statuses of the reads with a token, in order
	reads   int
	posted  []map[string]any
	badRead string // a read the fake did not expect
}

func (f *fakeEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == workload.PathEvent:
		var ev map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.posted = append(f.posted, ev)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"event_id":%q,"duplicate":false,"consistency_token":"tok-%d"}`, ev["event_id"], len(f.posted))
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/popular_game_modes":
		want := fmt.Sprintf("tok-%d", len(f.posted))
		if got := r.URL.Query().Get("after"); got != want || r.URL.Query().Get("region") != "US" {
			f.badRead = r.URL.RawQuery + " (want after=" + want + ")"
		}
		status := http.StatusOK
		if f.reads < len(f.script) {
			status = f.script[f.reads]
		}
		f.reads++
		w.WriteHeader(status)
		if status == http.StatusOK {
			fmt.Fprint(w, `{"region":"US","game_modes":[]}`)
		} else {
			fmt.Fprint(w, `{"error":{"code":"timeout","message":"not reflected in time"}}`)
		}
	default:
		http.NotFound(w, r)
	}
}

// The read-your-writes probe posts an ENTER, reads with the answer's token,
// records the answered reads, counts 504s as timeouts and other failures as
// errors, and puts each probe player it acknowledged in the ground truth.
func TestRYWProbeReadsWithTheTokenAndCountsTimeouts(t *testing.T) {
	edge := &fakeEdge{script: []int{200, 504, 200, 504, 503}}
	srv := httptest.NewServer(edge)
	defer srv.Close()
	cfg, err := parseConfig([]string{"--mode", "http", "--http-url", srv.URL, "--regions", "US,EU", "--game-modes", "1-3",
		"--players", "10", "--ryw-every", "5ms", "--user-prefix", "t-"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.newRYW()
	if err != nil {
		t.Fatal(err)
	}
	done := p.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		edge.mu.Lock()
		reads := edge.reads
		edge.mu.Unlock()
		if reads >= 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d reads in 10 s", reads)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.stop()
	<-done

	rep := p.report()
	edge.mu.Lock()
	defer edge.mu.Unlock()
	if edge.badRead != "" {
		t.Errorf("read without the last token: %s", edge.badRead)
	}
	if rep.Tries != int64(len(edge.posted)) || rep.Tries != int64(edge.reads) {
		t.Errorf("tries %d, posted %d, reads %d: want all equal", rep.Tries, len(edge.posted), edge.reads)
	}
	if rep.Timeouts != 2 || rep.Errors != 1 || rep.Count != rep.Tries-3 {
		t.Errorf("report %+v: want 2 timeouts, 1 error and the rest answered", rep)
	}
	if got := r.c.errors()["ryw:503"]; got != 1 {
		t.Errorf("errors map: ryw:503 = %d, want 1", got)
	}
	if rep.Slot != "US/1" {
		t.Errorf("slot %q, want US/1", rep.Slot)
	}
	users := map[string]bool{}
	for _, ev := range edge.posted {
		pl := ev["event_payload"].(map[string]any)
		if ev["event_type"] != "ENTER_GAME_MODE" || pl["region"] != "US" || pl["game_mode"] != float64(1) {
			t.Errorf("probe event %v: want an ENTER of US/1", ev)
		}
		id := ev["user_id"].(string)
		if !strings.HasPrefix(id, "t-ryw") {
			t.Errorf("probe user %q", id)
		}
		users[id] = true
	}
	b := workload.NewBounds(r.cat)
	p.contribute(b, time.Now(), 0)
	slot := domain.Slot{Region: 0, Mode: 0}
	if lo, hi := b.Lo.Get(slot), b.Hi.Get(slot); lo != int64(len(users)) || hi != lo {
		t.Errorf("ground truth of the probe players %d-%d, want %d (distinct players posted)", lo, hi, len(users))
	}
	// Players silent for the TTL may have expired.
	b = workload.NewBounds(r.cat)
	p.contribute(b, time.Now().Add(time.Hour), time.Minute)
	if lo, hi := b.Lo.Get(slot), b.Hi.Get(slot); lo != 0 || hi != int64(len(users)) {
		t.Errorf("after the TTL: %d-%d, want 0-%d", lo, hi, len(users))
	}
}

func TestRYWFlagNeedsHTTPAndAWritingMode(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "nats", "--nats-url", "nats://127.0.0.1:1", "--no-verify", "--ryw-every", "200ms"},
		{"--mode", "read", "--http-url", "http://127.0.0.1:1", "--ryw-every", "200ms"},
		{"--mode", "http", "--http-url", "http://127.0.0.1:1", "--ryw-every", "-1s"},
	} {
		if _, err := parseConfig(args, io.Discard); err == nil || !strings.Contains(err.Error(), "ryw-every") {
			t.Errorf("%v: error %v, want one naming --ryw-every", args, err)
		}
	}
}
