package main

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
)

// TestStartErrorsLeadWithTheFlagAndTheCause runs the binary with flag
// values that fail while the application is built or started (in a
// constructor or a start hook): the one error line names the flag and the
// cause, never fx's or dig's account of which Go function failed.
func TestStartErrorsLeadWithTheFlagAndTheCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	nobody := fmt.Sprintf("nats://127.0.0.1:%d", proctest.FreePort(t))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"embedded server on a busy port", []string{"--nats-listen", busyAddr},
			"cannot start: --nats-listen " + busyAddr + ": cannot start the embedded NATS server there"},
		{"no NATS server at the URL", []string{"--nats-url", nobody},
			"cannot start: --nats-url " + nobody + ": cannot connect to the NATS server"},
		{"HTTP on a busy port", []string{"--http-addr", busyAddr},
			"cannot start: --http-addr " + busyAddr + ": httpapi: cannot listen"},
		{"a negative rate limit", []string{"--rate-limit-user", "-1"},
			"cannot start: --rate-limit-user: httpapi: user rate limit -1"},
		{"a trusted proxy that is no address", []string{"--trusted-proxies", "lb.internal"},
			"cannot start: --trusted-proxies: httpapi: trusted proxies"},
		{"a JWT secret file that is not there", []string{"--jwt-secret-file", "/nonexistent/jwt"},
			"cannot start: --jwt-secret-file"},
	} {
		args := append([]string{"serve", "--log-format", "json", "--data-dir", t.TempDir(),
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t)), "--http-addr", "127.0.0.1:0"}, tc.args...)
		code, out := runToExit(t, args...)
		lines := errorLines(out)
		if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
			t.Errorf("%s: exit %d, error lines %q, want one starting %q", tc.name, code, lines, tc.want)
			continue
		}
		for _, fxText := range []string{"could not build", "failed to build", "non-nil error", "main."} {
			if strings.Contains(lines[0], fxText) {
				t.Errorf("%s: the error line carries fx's text %q: %s", tc.name, fxText, lines[0])
			}
		}
	}
}
