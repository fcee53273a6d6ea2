// Package proctest helps the tests that build this module's binaries and
// run them as processes: building a binary, picking free ports and
// collecting a process's output.
package proctest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Build compiles the main package pkg, a path relative to the module's root
// such as "./cmd/gamemodes", into dir and returns the binary's path.
func Build(dir, pkg string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// FreePort returns a TCP port that is free on the loopback interface now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Buffer collects a process's output; it is safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Tool returns the path of the program name (haproxy, prometheus, ...). When
// it is not installed the test is skipped, or fails when the environment
// variable require is "1" (CI sets it after installing the program, so that
// a missing install cannot pass as a skip).
func Tool(t testing.TB, name, require string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(require) == "1" {
		t.Fatalf("%s is not installed and %s=1: %v", name, require, err)
	}
	t.Skipf("%s is not installed (apt-get install %s; %s=1 makes this a failure)", name, name, require)
	return ""
}

// Process is a program a test started: its collected output and its end.
type Process struct {
	Cmd *exec.Cmd
	// Log holds everything the program wrote to stdout and stderr.
	Log *Buffer
	// Exited is closed once the program has exited.
	Exited chan struct{}
}

// Start starts cmd with its output collected. When the test ends the
// program is killed and, if the test failed, the last 8 KB of its output
// are logged under name.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Log: &Buffer{}, Exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.Exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.Exited
		if t.Failed() {
			t.Logf("%s output (last 8 KB):\n%s", name, Tail(p.Log.String(), 8<<10))
		}
	})
	return p
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
