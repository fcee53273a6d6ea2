//go:build linux

package domain

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// parseChildEnv makes the test binary, re-run as a child, call
// ParseGameModes with the env value under a 1 GiB address-space limit.
const parseChildEnv = "GAMEMODES_DOMAIN_PARSE_CHILD"

// ParseGameModes must terminate for every input: an upper bound of
// math.MaxInt64 makes `for m := a; m <= b; m++` wrap around and never end.
// The call runs in a child process with a memory limit, so a regression
// fails this test instead of exhausting the machine's memory.
func TestParseGameModesTerminatesAtMaxInt(t *testing.T) {
	if in, ok := os.LookupEnv(parseChildEnv); ok {
		lim := syscall.Rlimit{Cur: 1 << 30, Max: 1 << 30}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
			t.Skip("cannot limit memory:", err)
		}
		modes, err := ParseGameModes(in)
		fmt.Printf("returned %d modes, err %v\n", len(modes), err)
		return
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, in := range []string{"9223372036854775807", "9223372036854775806-9223372036854775807"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestParseGameModesTerminatesAtMaxInt$", "-test.count=1")
		cmd.Env = append(os.Environ(), parseChildEnv+"="+in)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			tail := out
			if len(tail) > 300 {
				tail = tail[:300]
			}
			t.Errorf("ParseGameModes(%q) did not return (child after %v: %v; output %q): the loop counter overflows at math.MaxInt64",
				in, time.Since(start).Round(time.Millisecond), err, tail)
		}
	}
}
