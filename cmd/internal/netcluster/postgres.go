package netcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Postgres is a private PostgreSQL server in a directory of its own, on a
// random port of 127.0.0.1, run as a restartable Process: the chaos soak
// cuts the archivers' link to it and restarts it. The binaries are Debian's
// (/usr/lib/postgresql/<version>/bin, the highest version, or
// GAMEMODES_POSTGRES_BIN). Run as root, the server runs as the system user
// postgres (PostgreSQL refuses root), owning the directory.
type Postgres struct {
	*Process
	// Port is the server's port on 127.0.0.1; Dir holds its data.
	Port int
	Dir  string
}

// URL is a connection URL of database db, as user postgres (trust).
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// PostgresBin returns the directory of the PostgreSQL server binaries.
func PostgresBin() (string, error) {
	if d := os.Getenv("GAMEMODES_POSTGRES_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("netcluster: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql, or set GAMEMODES_POSTGRES_BIN)")
}

// StartPostgres creates a database cluster in dir (initdb, trust
// authentication, fsync off: the soak kills processes, not the machine),
// starts it and waits until it accepts connections. Its log is logPath.
func StartPostgres(ctx context.Context, dir, logPath string) (*Postgres, error) {
	bin, err := PostgresBin()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("netcluster: postgres dir: %w", err)
	}
	cred, err := postgresCredential(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("netcluster: initdb: %w\n%s", err, out)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	p := &Postgres{Port: ports[0], Dir: dir}
	p.Process = newProcess("postgres", filepath.Join(bin, "postgres"), logPath,
		"-D", data, "-p", strconv.Itoa(p.Port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50")
	p.Process.cred = cred
	if err := p.Start(); err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx, 30*time.Second); err != nil {
		_ = p.Kill()
		return nil, err
	}
	return p, nil
}

// WaitReady waits until the server accepts TCP connections.
func (p *Postgres) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("netcluster: postgres exited; see %s", p.Log())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netcluster: postgres not accepting connections after %v; see %s", timeout, p.Log())
		}
	}
}

// Crash kills the server and every one of its processes (kill -9 of the
// process group: a postmaster killed alone leaves backends that keep its
// shared memory, and a new server refuses to start beside them) and waits
// until the postmaster is gone.
func (p *Postgres) Crash() error {
	pid := p.Pid()
	if pid == 0 {
		return fmt.Errorf("postgres: not running")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("postgres: kill -9 of its process group: %w", err)
	}
	<-p.Exited()
	return nil
}

// StopFast stops the server with a fast shutdown (SIGINT: open sessions
// are ended, as an operator's restart does), killing it if it has not
// exited when ctx ends.
func (p *Postgres) StopFast(ctx context.Context) error { return p.StopWith(ctx, syscall.SIGINT) }

// postgresCredential returns the credential the server runs under: nil
// unless this process is root, else the postgres user's, who is given dir.
func postgresCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("netcluster: running as root, PostgreSQL needs the user postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("netcluster: postgres dir: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
