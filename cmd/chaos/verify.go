package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"github.com/gamemodes/gamemodes/modules/domain"
)

// The verification's pure parts, tested on fakes: comparing the lobby with
// the ground truth, the archive with the acknowledged events, and the stored
// players with the reference model.

// lobbyDiff compares one edge's lobby lists (counts by game mode, by
// region) with the truth's bounds and describes every region that is off.
func lobbyDiff(cat *domain.Catalog, b workload.Bounds, lobby map[string]map[int]int64) []string {
	var out []string
	for ri, reg := range cat.Regions() {
		lo, hi := modeCounts(cat, b.Lo.Region(ri)), modeCounts(cat, b.Hi.Region(ri))
		got, ok := lobby[reg]
		if !ok {
			out = append(out, reg+": not read")
			continue
		}
		var parts []string
		for _, m := range workload.UnionKeys(got, hi) {
			if got[m] < lo[m] || got[m] > hi[m] {
				if lo[m] == hi[m] {
					parts = append(parts, fmt.Sprintf("mode %d want %d got %d", m, lo[m], got[m]))
				} else {
					parts = append(parts, fmt.Sprintf("mode %d want %d-%d got %d", m, lo[m], hi[m], got[m]))
				}
			}
		}
		if len(parts) > 0 {
			out = append(out, reg+": "+strings.Join(parts, "; "))
		}
	}
	return out
}

// modeCounts maps a region's counts (by mode index) to counts by game mode,
// zeros omitted.
func modeCounts(cat *domain.Catalog, perMode []int64) map[int]int64 {
	out := map[int]int64{}
	for m, n := range perMode {
		if n != 0 {
			out[cat.GameMode(m)] = n
		}
	}
	return out
}

// archiveCheck is the comparison of the archive with the events sent.
type archiveCheck struct {
	// Acknowledged is the number of events acknowledged; Lost of those the
	// archive lacks; Duplicated counts events stored more than once (rows
	// sharing an event_id, plus stream messages beyond the distinct events
	// archived: a copy the stream's deduplication let through); Unknown
	// counts archived events the run never sent.
	Acknowledged int `json:"acknowledged"`
	Lost         int `json:"lost"`
	Duplicated   int `json:"duplicated"`
	Unknown      int `json:"unknown"`
	// Unresolved events (never acknowledged) may or may not be stored;
	// UnresolvedStored says how many are.
	Unresolved       int      `json:"unresolved"`
	UnresolvedStored int      `json:"unresolved_stored"`
	Rows             int      `json:"rows"`
	StreamMessages   uint64   `json:"stream_messages"`
	LostSample       []string `json:"lost_sample,omitempty"`
}

// checkArchive compares archived event ids (rows: each row's event_id, as
// many times as stored) and the stream's message count with the acknowledged
// and unresolved event ids.
func checkArchive(acked, unresolved []string, rows []string, streamMsgs uint64) archiveCheck {
	c := archiveCheck{Acknowledged: len(acked), Unresolved: len(unresolved), Rows: len(rows), StreamMessages: streamMsgs}
	stored := make(map[string]int, len(rows))
	for _, id := range rows {
		stored[id]++
	}
	for _, n := range stored {
		if n > 1 {
			c.Duplicated += n - 1
		}
	}
	if extra := int64(streamMsgs) - int64(len(stored)); extra > 0 {
		c.Duplicated += int(extra)
	}
	sent := make(map[string]bool, len(acked)+len(unresolved))
	for _, id := range acked {
		sent[id] = true
		if stored[id] == 0 {
			c.Lost++
			if len(c.LostSample) < 10 {
				c.LostSample = append(c.LostSample, id)
			}
		}
	}
	for _, id := range unresolved {
		sent[id] = true
		if stored[id] > 0 {
			c.UnresolvedStored++
		}
	}
	for id := range stored {
		if !sent[id] {
			c.Unknown++
		}
	}
	return c
}

// playerExpectation is where the model counts one player at verification.
type playerExpectation struct {
	Key     string // the players bucket key
	State   workload.State
	Certain bool
}

// playersCheck is the comparison of the stored players with the model.
type playersCheck struct {
	Checked    int      `json:"checked"`   // players whose expected state is certain
	Uncertain  int      `json:"uncertain"` // skipped: in either of two states
	Mismatched int      `json:"mismatched"`
	Sample     []string `json:"sample,omitempty"`
}

// checkPlayers compares the decoded stored players (by key; a key absent
// from stored has no live value) with the model's expectations.
func checkPlayers(want []playerExpectation, stored map[string]domain.PlayerState) playersCheck {
	var c playersCheck
	for _, w := range want {
		if !w.Certain {
			c.Uncertain++
			continue
		}
		c.Checked++
		got, ok := stored[w.Key]
		present := ok && got.Present
		if present == w.State.Present && (!present || got.Slot == w.State.Slot) {
			continue
		}
		c.Mismatched++
		if len(c.Sample) < 10 {
			c.Sample = append(c.Sample, fmt.Sprintf("%s: want %s, stored %s", w.Key, describeState(w.State), describeStored(got, ok)))
		}
	}
	return c
}

func describeState(s workload.State) string {
	if !s.Present {
		return "absent"
	}
	return fmt.Sprintf("in region %d mode %d", s.Slot.Region, s.Slot.Mode)
}

func describeStored(st domain.PlayerState, ok bool) string {
	if !ok {
		return "no key"
	}
	return describeState(workload.State{Present: st.Present, Slot: st.Slot})
}

// stallCheck is the fencing check of one stalled worker.
type stallCheck struct {
	Worker  string `json:"worker"`
	Held    int    `json:"held"`           // leases it held when stopped
	Kept    []int  `json:"kept,omitempty"` // partitions whose lease still named it when it was resumed: NOT fenced
	Stepped bool   `json:"stepped_down"`   // its log shows a lost lease or a fenced write within 30 s of the resume
	Resumed string `json:"resumed"`
}

// lease is one partition lease as read: its owner and revision.
type lease struct {
	owner string
	rev   uint64
}

// judgeStall fills Held and Kept: a worker stopped longer than the lease
// TTL cannot renew, so each lease it held (before: partition -> revision)
// must have expired or been taken over by the time it is resumed (after:
// the leases then): a lease that still names it was not fenced. A worker
// that held no lease (just started, or handing over) has nothing to lose
// and nothing to log.
func judgeStall(c *stallCheck, before map[int]uint64, after map[int]lease) {
	c.Held = len(before)
	c.Kept = nil
	for p := range before {
		if after[p].owner == c.Worker {
			c.Kept = append(c.Kept, p)
		}
	}
	sort.Ints(c.Kept)
}

// stalledOK reports whether a stall check passed: no lease kept, and when it
// held leases, its log shows it stepped down within 30 s of the resume (a
// worker that held leases must find out it lost them: its next renewal is
// refused).
func stalledOK(c stallCheck) bool {
	return len(c.Kept) == 0 && (c.Held == 0 || c.Stepped)
}
