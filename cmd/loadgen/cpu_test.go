package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPostgresChildCounted(t *testing.T) {
	cases := []struct {
		cmdline string
		want    bool
	}{
		{"postgres: 15/main: postgres gamemodes_bench 127.0.0.1(40312) idle", true},
		{"postgres: 15/main: postgres other_db 127.0.0.1(40313) idle", false},
		{"postgres: postgres gamemodes_bench [local] idle", true},
		{"postgres: app other_db [local] INSERT", false},
		{"postgres: 15/main: checkpointer ", true},
		{"postgres: 15/main: walwriter ", true},
		{"postgres: 15/main: autovacuum worker other_db", true}, // background: always counted
		{"/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", true},
	}
	for _, c := range cases {
		if got := postgresChildCounted(c.cmdline, "gamemodes_bench"); got != c.want {
			t.Errorf("postgresChildCounted(%q) = %v, want %v", c.cmdline, got, c.want)
		}
	}
}

func TestCPUBetween(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := cpuReading{at: t0, procs: map[int]procTicks{
		1: {group: "gamemodes", user: 100, sys: 50, start: 7, wasPresent: true},
		2: {group: "postgres", user: 10, sys: 10, start: 8, wasPresent: true},
		3: {group: "postgres", user: 5, sys: 5, start: 9, wasPresent: true},   // gone at the end
		4: {group: "postgres", user: 99, sys: 99, start: 1, wasPresent: true}, // pid reused by a new process
	}, self: procTicks{user: 1, sys: 1}}
	b := cpuReading{at: t0.Add(10 * time.Second), procs: map[int]procTicks{
		1: {group: "gamemodes", user: 400, sys: 150, start: 7, wasPresent: true},
		2: {group: "postgres", user: 60, sys: 30, start: 8, wasPresent: true},
		4: {group: "postgres", user: 20, sys: 10, start: 12, wasPresent: true},
		5: {group: "postgres", user: 10, sys: 0, start: 13, wasPresent: true}, // born in the window
	}, self: procTicks{user: 51, sys: 11}}
	r := cpuBetween(a, b, 1000)
	// user: 300 + 50 + 20 + 10 = 380 ticks = 3.8 s; sys: 100 + 20 + 10 = 130 ticks = 1.3 s.
	if r.UserS != 3.8 || r.SysS != 1.3 {
		t.Fatalf("user %v sys %v, want 3.8 and 1.3", r.UserS, r.SysS)
	}
	if r.UsPerEvent != 5100 || r.UserUsPerEvent != 3800 || r.SysUsPerEvent != 1300 {
		t.Fatalf("per event %v (user %v, sys %v), want 5100, 3800, 1300", r.UsPerEvent, r.UserUsPerEvent, r.SysUsPerEvent)
	}
	if r.Cores != 0.51 || r.Processes != 4 || r.Vanished != 1 {
		t.Fatalf("cores %v processes %d vanished %d", r.Cores, r.Processes, r.Vanished)
	}
	if len(r.Groups) != 2 || r.Groups[0].Name != "gamemodes" || r.Groups[0].UserS != 3 || r.Groups[1].UserS != 0.8 {
		t.Fatalf("groups %+v", r.Groups)
	}
	if r.Loadgen.UserS != 0.5 || r.Loadgen.SysS != 0.1 {
		t.Fatalf("loadgen %+v", r.Loadgen)
	}
}

// TestCPUReadSelf reads this test process as a named one: its CPU only grows.
func TestCPUReadSelf(t *testing.T) {
	target := cpuTarget{pids: []int{os.Getpid()}}
	a, err := target.read()
	if err != nil {
		t.Fatal(err)
	}
	for x, deadline := 0, time.Now().Add(50*time.Millisecond); time.Now().Before(deadline); x++ {
		_ = x * x
	}
	b, err := target.read()
	if err != nil {
		t.Fatal(err)
	}
	r := cpuBetween(a, b, 1)
	if r.UserS+r.SysS < 0 || r.Processes != 1 || len(r.Groups) != 1 {
		t.Fatalf("report %+v", r)
	}
	if _, err := (cpuTarget{pids: []int{1 << 30}}).read(); err == nil {
		t.Fatal("reading a process that does not exist: no error")
	}
}

func TestCostTable(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, name), append([]byte("progress line\n"), b...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, us := range []float64{100, 300, 200} {
		s := summary{Rate: 4000, Verify: verifyReport{Result: "pass"}, CPU: &cpuReport{UsPerEvent: us, WindowS: 30, Cores: 0.8}}
		write("cost.base.http.4000."+string(rune('1'+i))+".json", s)
	}
	write("cost.naive.http.4000.1.json", summary{Rate: 2000, Verify: verifyReport{Result: "fail"}, CPU: &cpuReport{UsPerEvent: 400}})
	write("idle.base.1.json", map[string]any{"cpu": cpuReport{WindowS: 30, Cores: 0.01}})
	if err := os.WriteFile(filepath.Join(dir, "cost.bins"), []byte("base=/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := readCostDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tab.write(&out)
	got := out.String()
	for _, want := range []string{"| http | 4000 | base | 3 | 4000 | 200.0 |", "| http | 4000 | naive | 1 | 2000 | 400.0 |", "| 0/1 |", "| base | 1 | 30 | 0.0100 |"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "| base |") > strings.Index(got, "| naive |") {
		t.Errorf("binaries out of order:\n%s", got)
	}
}
