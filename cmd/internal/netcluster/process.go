package netcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is one child process of the cluster, restartable with the same
// command line. Its output goes to a log file, appended across restarts.
// Its methods are safe for concurrent use.
type Process struct {
	name string
	bin  string
	args []string
	log  string
	cred *syscall.Credential // the user to run as; nil: this process's

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current run has ended
	paused bool
}

func newProcess(name, bin, log string, args ...string) *Process {
	exited := make(chan struct{})
	close(exited)
	return &Process{name: name, bin: bin, args: args, log: log, exited: exited}
}

// Name is the process's name in the cluster (e.g. "nats2", "worker1").
func (p *Process) Name() string { return p.name }

// Log is the path of the process's log file.
func (p *Process) Log() string { return p.log }

// Args is the process's command line after the binary.
func (p *Process) Args() []string { return p.args }

// Start starts the process; an error if it runs already.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.exited:
	default:
		return fmt.Errorf("%s: already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	fmt.Fprintf(out, "--- netcluster: starting %s at %s\n", p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = p.cred
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	p.cmd, p.exited, p.paused = cmd, exited, false
	return nil
}

// Running reports whether the process runs (paused counts as running).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the process id of the current run, 0 when not running.
func (p *Process) Pid() int {
	if !p.Running() {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Exited returns a channel closed when the current run ends.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// signal sends sig to the running process; an error when it is not running.
func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.exited:
		return fmt.Errorf("%s: not running", p.name)
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT, syscall.SIGKILL:
		p.paused = false
	}
	return nil
}

// Kill sends SIGKILL (kill -9) and waits until the process is gone.
func (p *Process) Kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.Exited()
	return nil
}

// Pause stops the process with SIGSTOP, as a stalled machine would.
func (p *Process) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error { return p.signal(syscall.SIGCONT) }

// Stop ends the process gracefully: SIGTERM (after SIGCONT if paused),
// then SIGKILL when it has not exited once ctx ends. Stopping a process that
// does not run does nothing.
func (p *Process) Stop(ctx context.Context) error { return p.StopWith(ctx, syscall.SIGTERM) }

// StopWith is Stop with another signal than SIGTERM (PostgreSQL's fast
// shutdown is SIGINT).
func (p *Process) StopWith(ctx context.Context, sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused {
		_ = p.signal(syscall.SIGCONT)
	}
	if err := p.signal(sig); err != nil {
		return nil // exited meanwhile
	}
	select {
	case <-p.Exited():
		return nil
	case <-ctx.Done():
		_ = p.Kill()
		return fmt.Errorf("%s: did not stop on %v, killed: %w", p.name, sig, ctx.Err())
	}
}

// Restart stops the process gracefully (see Stop) and starts it again.
func (p *Process) Restart(ctx context.Context) error {
	err := p.Stop(ctx)
	if err2 := p.Start(); err2 != nil {
		return errors.Join(err, err2)
	}
	return err
}
