package main

import (
	"fmt"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"maps"
	"math"
	"strings"
	"time"
)

// verifyPoll is how often verification reads the lobby while waiting.
const verifyPoll = 100 * time.Millisecond

// verifyReport is the outcome of comparing the lobby with the ground truth.
type verifyReport struct {
	// Result is pass, fail or skipped.
	Result string `json:"result"`
	// Exact is false when some players' state is uncertain or near expiry,
	// so counts were checked against a range.
	Exact      bool                `json:"exact"`
	Regions    int                 `json:"regions"`              // regions compared
	Matched    int                 `json:"regions_matched"`      // regions equal to the truth in the last poll
	WaitedS    float64             `json:"waited_s"`             // time from the end of the run to the result
	Truth      workload.TruthStats `json:"truth"`                // how the truth was made up
	Mismatches []regionMismatch    `json:"mismatches,omitempty"` // the regions that differed in the last poll
}

// regionMismatch is one region whose lobby list differs from the truth.
type regionMismatch struct {
	Region  string        `json:"region"`
	Want    map[int]int64 `json:"want,omitempty"`     // expected players by game mode (the lower bound)
	WantMax map[int]int64 `json:"want_max,omitempty"` // upper bound, when the truth is a range
	Got     map[int]int64 `json:"got,omitempty"`      // the lobby's answer
	Error   string        `json:"error,omitempty"`    // why the lobby could not be read or is malformed
}

// verify polls every region's lobby list until all equal the ground truth
// (plus the baseline) or --settle has passed, and prints one line per region.
// While the truth is a range (players near expiry or uncertain) a match
// within it only passes at the deadline: polling goes on in the hope of an
// exact truth (with --player-ttl: once every player is clearly present or
// expired).
func (r *runner) verify(pr *probe) verifyReport {
	start := time.Now()
	deadline := start.Add(r.cfg.settle)
	for {
		b, st := r.expected(time.Now(), pr)
		rep := r.compare(b)
		rep.Truth, rep.Exact = st, b.Exact()
		rep.WaitedS = math.Round(time.Since(start).Seconds()*1000) / 1000
		match, late := len(rep.Mismatches) == 0, time.Now().After(deadline)
		if match && (rep.Exact || late || st.Uncertain > 0 && st.MaybeExpired == 0) || late {
			rep.Result = map[bool]string{true: "pass", false: "fail"}[match]
			r.printVerify(rep, b)
			return rep
		}
		time.Sleep(verifyPoll)
	}
}

// expected returns the loadgen's own players' workload.Bounds, the probe included.
func (r *runner) expected(now time.Time, pr *probe) (workload.Bounds, workload.TruthStats) {
	b, st := workload.NewBounds(r.cat), workload.TruthStats{}
	if r.pop != nil {
		b, st = r.pop.Truth(now, r.cfg.playerTTL, r.cfg.expirySlack)
	}
	pr.contribute(b, now, r.cfg.playerTTL)
	if r.ryw != nil {
		r.ryw.contribute(b, now, r.cfg.playerTTL)
	}
	return b, st
}

// compare reads every region's lobby list once and compares it with the
// baseline plus b.
func (r *runner) compare(b workload.Bounds) verifyReport {
	rep := verifyReport{Regions: r.cat.NumRegions()}
	for ri, reg := range r.cat.Regions() {
		lo, hi := r.want(ri, b.Lo.Region(ri)), r.want(ri, b.Hi.Region(ri))
		got, err := r.admin.Lobby(reg)
		if err != nil {
			rep.Mismatches = append(rep.Mismatches, regionMismatch{Region: reg, Error: err.Error()})
			continue
		}
		if !within(got, lo, hi) {
			m := regionMismatch{Region: reg, Want: lo, Got: got}
			if !maps.Equal(lo, hi) {
				m.WantMax = hi
			}
			rep.Mismatches = append(rep.Mismatches, m)
			continue
		}
		rep.Matched++
	}
	return rep
}

// want returns a region's expected counts by game mode: the baseline plus
// perMode (indexed by mode index), zeros omitted.
func (r *runner) want(region int, perMode []int64) map[int]int64 {
	out := maps.Clone(r.baseline[r.cat.Region(region)])
	if out == nil {
		out = map[int]int64{}
	}
	for m, n := range perMode {
		out[r.cat.GameMode(m)] += n
	}
	maps.DeleteFunc(out, func(_ int, n int64) bool { return n == 0 })
	return out
}

// within reports whether lo[m] <= got[m] <= hi[m] for every mode.
func within(got, lo, hi map[int]int64) bool {
	for _, m := range workload.UnionKeys(got, hi) {
		if got[m] < lo[m] || got[m] > hi[m] {
			return false
		}
	}
	return true
}

// printVerify writes one line per region: ok with its player total, or the
// modes that differ.
func (r *runner) printVerify(rep verifyReport, b workload.Bounds) {
	bad := map[string]regionMismatch{}
	for _, m := range rep.Mismatches {
		bad[m.Region] = m
	}
	for ri, reg := range r.cat.Regions() {
		m, isBad := bad[reg]
		switch {
		case !isBad:
			var total int64
			for _, n := range r.want(ri, b.Lo.Region(ri)) {
				total += n
			}
			fmt.Fprintf(r.log, "verify %-4s ok (%d players)\n", reg, total)
		case m.Error != "":
			fmt.Fprintf(r.log, "verify %-4s MISMATCH: %s\n", reg, m.Error)
		default:
			fmt.Fprintf(r.log, "verify %-4s MISMATCH: %s\n", reg, describeDiff(m))
		}
	}
	fmt.Fprintf(r.log, "verify: %s, %d/%d regions match after %.1fs (exact=%v, %d players counted, %d dropped, %d uncertain)\n",
		rep.Result, rep.Matched, rep.Regions, rep.WaitedS, rep.Exact, rep.Truth.Counted, rep.Truth.Dropped, rep.Truth.Uncertain)
}

// describeDiff lists the modes of a mismatch whose count is off.
func describeDiff(m regionMismatch) string {
	hi := m.WantMax
	if hi == nil {
		hi = m.Want
	}
	var parts []string
	for _, mode := range workload.UnionKeys(m.Got, hi) {
		g, lo, h := m.Got[mode], m.Want[mode], hi[mode]
		if g >= lo && g <= h {
			continue
		}
		if lo == h {
			parts = append(parts, fmt.Sprintf("mode %d want %d got %d", mode, lo, g))
		} else {
			parts = append(parts, fmt.Sprintf("mode %d want %d-%d got %d", mode, lo, h, g))
		}
	}
	return strings.Join(parts, "; ")
}
