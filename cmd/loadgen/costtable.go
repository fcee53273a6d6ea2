package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// costTableCommand is `loadgen cost-table DIR`: the markdown table of the
// cost scenario (scripts/bench.sh cost) from the summaries in DIR, named
// cost.<binary>.<transport>.<rate>.<run>.json (the load generator's output,
// its last line the summary) and idle.<binary>.<run>.json (`loadgen cpu`).
// Each cell is the median over the runs.
func costTableCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: loadgen cost-table DIR")
		return 2
	}
	t, err := readCostDir(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "loadgen cost-table:", err)
		return 1
	}
	t.write(stdout)
	return 0
}

// costKey names one cell of the table.
type costKey struct{ bin, transport, rate string }

// costTable holds the runs of a cost scenario.
type costTable struct {
	bins     []string // in the order first seen in cost.bins, else sorted
	loads    map[costKey][]summary
	idle     map[string][]cpuReport
	idleMsgs map[string][]float64 // NATS messages per second while idle
}

func readCostDir(dir string) (*costTable, error) {
	t := &costTable{loads: map[costKey][]summary{}, idle: map[string][]cpuReport{}, idleMsgs: map[string][]float64{}}
	if b, err := os.ReadFile(filepath.Join(dir, "cost.bins")); err == nil {
		for l := range strings.Lines(string(b)) {
			if name, _, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
				t.bins = append(t.bins, name)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".json"), ".")
		switch {
		case len(parts) == 5 && parts[0] == "cost":
			var s summary
			if err := lastJSONLine(f, &s); err != nil {
				continue // a run that produced no summary is left out
			}
			k := costKey{parts[1], parts[2], parts[3]}
			t.loads[k] = append(t.loads[k], s)
			t.addBin(parts[1])
		case len(parts) == 3 && parts[0] == "idle":
			var v struct {
				CPU    cpuReport     `json:"cpu"`
				Engine *engineReport `json:"engine_per_second"`
			}
			if err := lastJSONLine(f, &v); err != nil {
				continue
			}
			t.idle[parts[1]] = append(t.idle[parts[1]], v.CPU)
			if v.Engine != nil && v.Engine.MsgsPerEvent != nil {
				t.idleMsgs[parts[1]] = append(t.idleMsgs[parts[1]], *v.Engine.MsgsPerEvent)
			}
			t.addBin(parts[1])
		}
	}
	if len(t.loads) == 0 && len(t.idle) == 0 {
		return nil, fmt.Errorf("%s: no cost.*.json or idle.*.json summaries", dir)
	}
	return t, nil
}

func (t *costTable) addBin(name string) {
	if !slices.Contains(t.bins, name) {
		t.bins = append(t.bins, name)
	}
}

// lastJSONLine decodes the last line of f that starts with '{' into v.
func lastJSONLine(f string, v any) error {
	fh, err := os.Open(f)
	if err != nil {
		return err
	}
	defer fh.Close()
	var last []byte
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 && l[0] == '{' {
			last = append(last[:0], l...)
		}
	}
	if last == nil {
		return fmt.Errorf("%s: no JSON line", f)
	}
	return json.Unmarshal(last, v)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianOf[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return median(v)
}

func rateOrder(r string) float64 {
	if v, err := strconv.ParseFloat(r, 64); err == nil {
		return v
	}
	return 1e12 // "max" last
}

func (t *costTable) write(w io.Writer) {
	var keys []costKey
	for k := range t.loads {
		keys = append(keys, k)
	}
	binIndex := func(b string) int { return slices.Index(t.bins, b) }
	slices.SortFunc(keys, func(a, b costKey) int {
		if a.transport != b.transport {
			return strings.Compare(a.transport, b.transport)
		}
		if ra, rb := rateOrder(a.rate), rateOrder(b.rate); ra != rb {
			if ra < rb {
				return -1
			}
			return 1
		}
		return binIndex(a.bin) - binIndex(b.bin)
	})
	fmt.Fprintln(w, "Service-side CPU per acknowledged event (the process named by --cpu-pids: gamemodes with its embedded NATS, or the naive baseline plus Redis; plus the Postgres backends of the bench database and Postgres's background processes), during the send phase; median over runs.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| transport | rate | binary | runs | events/s | µs/event | user µs | sys µs | cores | after-send µs/event | NATS msgs/event | allocs/event | loadgen cores | load avg | POST p99 ms | freshness p99 ms | lobby exact |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, k := range keys {
		runs := t.loads[k]
		cpu := func(f func(*cpuReport) float64) float64 {
			return medianOf(runs, func(s summary) float64 {
				if s.CPU == nil {
					return 0
				}
				return f(s.CPU)
			})
		}
		after := medianOf(runs, func(s summary) float64 {
			if s.CPUAfter == nil {
				return 0
			}
			return s.CPUAfter.UsPerEvent
		})
		lg := cpu(func(c *cpuReport) float64 {
			if c.WindowS == 0 {
				return 0
			}
			return (c.Loadgen.UserS + c.Loadgen.SysS) / c.WindowS
		})
		engine := func(f func(*engineReport) *float64) string {
			var vs []float64
			for _, s := range runs {
				if s.Engine != nil && f(s.Engine) != nil {
					vs = append(vs, *f(s.Engine))
				}
			}
			if len(vs) == 0 {
				return "-"
			}
			return strconv.FormatFloat(median(vs), 'f', 1, 64)
		}
		pass := 0
		for _, s := range runs {
			if s.Verify.Result == "pass" {
				pass++
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.0f | %.1f | %.1f | %.1f | %.2f | %.1f | %s | %s | %.2f | %.1f | %.1f | %.1f | %d/%d |\n",
			k.transport, k.rate, k.bin, len(runs),
			medianOf(runs, func(s summary) float64 { return s.Rate }),
			cpu(func(c *cpuReport) float64 { return c.UsPerEvent }),
			cpu(func(c *cpuReport) float64 { return c.UserUsPerEvent }),
			cpu(func(c *cpuReport) float64 { return c.SysUsPerEvent }),
			cpu(func(c *cpuReport) float64 { return c.Cores }),
			after,
			engine(func(e *engineReport) *float64 { return e.MsgsPerEvent }),
			engine(func(e *engineReport) *float64 { return e.AllocsPerEvent }),
			lg,
			cpu(func(c *cpuReport) float64 { return c.LoadAvg1 }),
			medianOf(runs, func(s summary) float64 { return s.Post.P99 }),
			medianOf(runs, func(s summary) float64 { return s.Freshness.P99 }),
			pass, len(runs))
	}
	if len(t.idle) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Idle (no load, empty store), same processes:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| binary | runs | window s | cores | user s | sys s | NATS msgs/s |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, b := range t.bins {
		runs := t.idle[b]
		if len(runs) == 0 {
			continue
		}
		msgs := "-"
		if m := t.idleMsgs[b]; len(m) > 0 {
			msgs = strconv.FormatFloat(median(m), 'f', 1, 64)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %.4f | %.2f | %.2f | %s |\n", b, len(runs),
			medianOf(runs, func(c cpuReport) float64 { return c.WindowS }),
			medianOf(runs, func(c cpuReport) float64 { return c.Cores }),
			medianOf(runs, func(c cpuReport) float64 { return c.UserS }),
			medianOf(runs, func(c cpuReport) float64 { return c.SysS }), msgs)
	}
}
