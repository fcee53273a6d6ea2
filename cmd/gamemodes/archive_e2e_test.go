package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// archiveCheck compares the event table with the accepted event ids.
func archiveCheck(t *testing.T, pgURL string, accepted map[string]bool, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(within)
	var rows, distinct int
	for {
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM event`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows >= len(accepted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rows != len(accepted) || distinct != rows {
		t.Fatalf("event table holds %d rows (%d distinct), want exactly the %d accepted events", rows, distinct, len(accepted))
	}
	r, err := conn.Query(ctx, `SELECT event_id FROM event`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !accepted[id] {
			t.Fatalf("event table holds %q, which was never accepted", id)
		}
	}
}

// driver sends events to a running gamemodes over HTTP and NATS and keeps
// the accepted ids and the ground truth.
type driver struct {
	t        *testing.T
	p        *proc
	js       jetstream.JetStream
	mu       sync.Mutex
	accepted map[string]bool
	truth    truth
	client   *http.Client
}

func newDriver(t *testing.T, p *proc) *driver {
	nc, err := nats.Connect(p.natsURL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &driver{t: t, p: p, js: js, accepted: map[string]bool{}, truth: truth{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// send posts (even i) or publishes (odd i) event i of a user; every 13th is
// sent twice (a retry) and every 17th is followed by an invalid message.
func (d *driver) send(i int, user string, rng *rand.Rand) error {
	typ := "ENTER_GAME_MODE"
	if rng.IntN(3) == 0 {
		typ = "LEAVE_GAME_MODE"
	}
	region, mode := []string{"US", "EU", "BR"}[rng.IntN(3)], 1+rng.IntN(10)
	id := "a-" + strconv.Itoa(i)
	body := eventBody(id, user, typ, region, mode)
	for attempt := 0; attempt < 1+boolInt(i%13 == 0); attempt++ {
		if i%2 == 0 {
			resp, err := d.client.Post(d.p.httpURL+"/api/v1/event", "application/json", strings.NewReader(body))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("post %s: status %d", id, resp.StatusCode)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := d.js.Publish(ctx, topology.EventSubject(region, domain.UserToken(user)), []byte(body), jetstream.WithMsgID(id))
			cancel()
			if err != nil {
				return err
			}
		}
	}
	if i%17 == 0 { // invalid: never archived as an event
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.js.Publish(ctx, topology.EventSubject("US", "bad"), []byte(`{"user_id":"bad","event_type":"NOPE"}`))
		cancel()
		if err != nil {
			return err
		}
		// An invalid HTTP body is refused and stores nothing.
		resp, err := d.client.Post(d.p.httpURL+"/api/v1/event", "application/json", strings.NewReader(`{"user_id":-1}`))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			return fmt.Errorf("invalid post: status %d", resp.StatusCode)
		}
	}
	d.mu.Lock()
	d.accepted[id] = true
	d.truth.apply(user, typ, region, mode)
	d.mu.Unlock()
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// run sends events [from, to) from `workers` goroutines; each user belongs
// to one goroutine so per-user order holds.
func (d *driver) run(from, to, workers int) {
	d.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(from)))
			for i := from + w; i < to; i += workers {
				user := strconv.Itoa(w + workers*rng.IntN(500))
				if err := d.send(i, user, rng); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		d.t.Fatalf("sending events: %v", err)
	}
}

func TestArchiveHoldsEveryAcceptedEventExactlyOnce(t *testing.T) {
	pg := pgtest.Schema(t)
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(), "--postgres-url", pg)
	p.waitReady()
	d := newDriver(t, p)
	d.run(0, 100_000, 32)
	archiveCheck(t, pg, d.accepted, 60*time.Second)
	p.waitPopular(d.truth.counts(), 30*time.Second)
}

func TestArchiveSurvivesPostgresOutageAndKill9(t *testing.T) {
	pg := pgtest.Schema(t)
	proxy := pgtest.NewProxy(t, pg)
	httpPort, natsPort, dir := proctest.FreePort(t), proctest.FreePort(t), t.TempDir()
	p := startProc(t, httpPort, natsPort, dir, "--postgres-url", proxy.URL(pg))
	p.waitReady()
	d := newDriver(t, p)
	d.run(0, 3000, 8)

	// Postgres unreachable: ingestion goes on, events wait in the stream.
	proxy.Cut()
	d.run(3000, 8000, 8)
	metrics := scrape(t, p.httpURL)
	if !strings.Contains(metrics, "gamemodes_archive_store_up 0") {
		t.Errorf("archive store not reported down during the outage")
	}
	proxy.Restore()
	d.run(8000, 10000, 8)

	// kill -9 in the middle of archiving, then restart on the same store.
	d.run(10000, 14000, 8)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p2 := startProc(t, httpPort, natsPort, dir, "--postgres-url", proxy.URL(pg))
	p2.waitReady()
	d.p = p2
	d.run(14000, 15000, 8)
	archiveCheck(t, pg, d.accepted, 60*time.Second)
	p2.waitPopular(d.truth.counts(), 30*time.Second)
}

// TestTwoArchiverProcessesAndKill9MidBatch: two archiver processes started
// at once on one archive (both migrate it, serialised by goose's lock) next
// to an edge and worker process: one archives, the other waits as a
// standby. The active one is killed with SIGKILL while events flow; the
// standby takes over after the checkpoint, and the event table ends with
// every accepted event exactly once.
func TestTwoArchiverProcessesAndKill9MidBatch(t *testing.T) {
	pg := pgtest.Schema(t)
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(), "--roles", "edge,worker")
	p.waitReady()
	var archivers [2]*proc
	for i := range archivers {
		archivers[i] = startRole(t, p.natsURL, "--roles", "archiver", "--postgres-url", pg)
	}
	for _, a := range archivers {
		a.waitReady()
	}
	d := newDriver(t, p)
	d.run(0, 2000, 8)
	archiveCheck(t, pg, d.accepted, 60*time.Second)
	isActive := func(a *proc) bool { return strings.Contains(scrape(t, a.httpURL), "\ngamemodes_archive_active 1\n") }
	var active, standby *proc
	switch {
	case isActive(archivers[0]) && !isActive(archivers[1]):
		active, standby = archivers[0], archivers[1]
	case isActive(archivers[1]) && !isActive(archivers[0]):
		active, standby = archivers[1], archivers[0]
	default:
		t.Fatalf("want exactly one active archiver: %v %v", isActive(archivers[0]), isActive(archivers[1]))
	}

	// Kill the active archiver while it archives a stream of events.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	killed := make(chan int, 1)
	go func() {
		defer close(killed)
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM event`).Scan(&n); err == nil && n >= 3000 {
				_ = active.cmd.Process.Signal(syscall.SIGKILL)
				killed <- n
				return
			}
		}
	}()
	d.run(2000, 8000, 8)
	n, ok := <-killed
	if !ok {
		t.Fatal("the archive never reached 3,000 rows while events flowed")
	}
	<-active.exited
	d.run(8000, 9000, 8)
	archiveCheck(t, pg, d.accepted, 60*time.Second)
	if !isActive(standby) {
		t.Fatal("the standby did not take over")
	}
	t.Logf("active archiver killed at %d rows; the standby archived the rest: %d events in all", n, len(d.accepted))
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

func TestRebuildFromArchiveAfterLosingNATSStorage(t *testing.T) {
	pg := pgtest.Schema(t)
	httpPort, natsPort, dir := proctest.FreePort(t), proctest.FreePort(t), t.TempDir()
	p := startProc(t, httpPort, natsPort, dir, "--postgres-url", pg)
	p.waitReady()
	d := newDriver(t, p)
	d.run(0, 5000, 8)
	want := d.truth.counts()
	p.waitPopular(want, 30*time.Second)
	archiveCheck(t, pg, d.accepted, 60*time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	// Disaster: the NATS store is gone.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binPath, "rebuild", "--postgres-url", pg, "--data-dir", dir,
		"--regions", "US,EU,BR", "--partitions", "8", "--log-format", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"players_restored"`) {
		t.Fatalf("rebuild printed no report:\n%s", out)
	}
	p2 := startProc(t, httpPort, natsPort, dir, "--postgres-url", pg)
	p2.waitReady()
	p2.waitPopular(want, 30*time.Second)

	// New events apply on top of the rebuilt state.
	d.p = p2
	d.run(5000, 5500, 4)
	p2.waitPopular(d.truth.counts(), 30*time.Second)

	// With workers running, rebuild refuses without --force.
	out, err = exec.Command(binPath, "rebuild", "--postgres-url", pg, "--nats-url", p2.natsURL,
		"--regions", "US,EU,BR", "--log-format", "json").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("rebuild over live workers: want exit 3, got %v\n%s", err, out)
	}
}
