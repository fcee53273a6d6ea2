//go:build linux

package domain

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// parseChildEnv makes the test binary, re-run as a child, call
// ParseGameModes with the env value under a 1 GiB address-space limit.
const parseChildEnv = "GAMEMODES_DOMAIN_PARSE_CHILD"

// parseChildReturned starts the line the child prints once ParseGameModes
// returned: without it the child did not run the call (it skipped).
const parseChildReturned = "ParseGameModes returned"

// ParseGameModes must terminate for every input: an upper bound of
// math.MaxInt64 makes `for m := a; m <= b; m++` wrap around and never end.
// The call runs in a child process with a memory limit, so a regression
// fails this test instead of exhausting the machine's memory.
func TestParseGameModesTerminatesAtMaxInt(t *testing.T) {
	if in, ok := os.LookupEnv(parseChildEnv); ok {
		// Allow 256 MiB of address space above what the process (maybe
		// built with -race, which maps a large shadow) already has.
		used, err := vmSize()
		if err != nil {
			t.Skip("cannot read the address space size:", err)
		}
		lim := syscall.Rlimit{Cur: used + 256<<20, Max: used + 256<<20}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
			t.Skip("cannot limit memory:", err)
		}
		modes, err := ParseGameModes(in)
		fmt.Printf("%s %d modes, err %v\n", parseChildReturned, len(modes), err)
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
		tail := out
		if len(tail) > 300 {
			tail = tail[:300]
		}
		switch {
		case err != nil:
			t.Errorf("ParseGameModes(%q) did not return (child after %v: %v; output %q): the loop counter overflows at math.MaxInt64",
				in, time.Since(start).Round(time.Millisecond), err, tail)
		case !bytes.Contains(out, []byte(parseChildReturned)):
			// The child skipped (no memory limit here): nothing was shown.
			t.Skipf("the child did not call ParseGameModes(%q): %q", in, tail)
		}
	}
}

// vmSize returns the process's virtual memory size in bytes.
func vmSize() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmSize:")); ok {
			f := bytes.Fields(rest) // "12345 kB"
			if len(f) == 2 && string(f[1]) == "kB" {
				kb, err := strconv.ParseUint(string(f[0]), 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmSize in /proc/self/status")
}
