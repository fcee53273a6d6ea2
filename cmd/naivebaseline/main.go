// Command naivebaseline is a BENCHMARK BASELINE, not part of the product:
// the seed's straightforward design (SEED.md), with the same HTTP contract
// as gamemodes so the same load generator drives both and the cost per
// event can be compared in one session (scripts/bench.sh cost).
//
// Per POST /api/v1/event: decode and validate the event (the product's own
// domain.DecodeEvent), INSERT it into Postgres table event (the seed's five
// columns, ON CONFLICT (event_id) DO NOTHING: a retry is not applied
// twice), read the player's current slot from Redis (GET), then in one
// MULTI/EXEC set the player's new slot with a 1 h expiry (or delete it) and
// move the counts (HINCRBY on one hash per region). GET
// /api/v1/popular_game_modes?region=R reads the region's hash (HGETALL) and
// sorts it. There are no partitions, no fencing and no expiry of counts:
// what the seed describes, and what gamemodes improves on. Keys carry a
// prefix unique to the process (--key-prefix), deleted at a graceful stop,
// so it can share a Redis with others.
//
//	go run ./cmd/naivebaseline --http-addr 127.0.0.1:18490 \
//	  --postgres-url postgres://postgres@127.0.0.1:5432/naive_bench --redis-addr 127.0.0.1:6379
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nuid"
	"github.com/redis/go-redis/v9"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "naivebaseline:", err)
		os.Exit(1)
	}
}

const createTable = `CREATE TABLE IF NOT EXISTS event (
	event_id      TEXT PRIMARY KEY,
	user_id       TEXT,
	event_type    TEXT,
	event_payload JSONB,
	timestamp     TIMESTAMP
)`

const insertEvent = `INSERT INTO event (event_id, user_id, event_type, event_payload, timestamp)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING`

// baseline is the service.
type baseline struct {
	cat    *domain.Catalog
	rdb    *redis.Client
	pg     *pgxpool.Pool
	prefix string
	ttl    time.Duration
}

func run(args []string) error {
	fs := flag.NewFlagSet("naivebaseline", flag.ContinueOnError)
	httpAddr := fs.String("http-addr", "127.0.0.1:18490", "HTTP listen address")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address")
	redisDB := fs.Int("redis-db", 0, "Redis database number")
	pgURL := fs.String("postgres-url", "", "Postgres URL of the database holding table event (created if missing)")
	pgConns := fs.Int("postgres-conns", 32, "Postgres connections in the pool")
	prefix := fs.String("key-prefix", "", "prefix of the Redis keys (default: naive:<random>:)")
	ttl := fs.Duration("player-ttl", time.Hour, "expiry of a player's key")
	regions := fs.String("regions", strings.Join(domain.DefaultRegions, ","), "comma list of regions")
	modes := fs.String("game-modes", "1-10", "comma list of game modes and ranges")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pgURL == "" {
		return errors.New("--postgres-url is required")
	}
	gm, err := domain.ParseGameModes(*modes)
	if err != nil {
		return err
	}
	cat, err := domain.NewCatalog(domain.ParseRegions(*regions), gm)
	if err != nil {
		return err
	}
	if *prefix == "" {
		*prefix = "naive:" + nuid.Next() + ":"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pcfg, err := pgxpool.ParseConfig(*pgURL)
	if err != nil {
		return fmt.Errorf("--postgres-url: %w", err)
	}
	pcfg.MaxConns = int32(*pgConns)
	pg, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer pg.Close()
	if _, err := pg.Exec(ctx, createTable); err != nil {
		return fmt.Errorf("create table event: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, DB: *redisDB})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", *redisAddr, err)
	}
	b := &baseline{cat: cat, rdb: rdb, pg: pg, prefix: *prefix, ttl: *ttl}

	app := fiber.New(fiber.Config{DisableStartupMessage: true, AppName: "naivebaseline"})
	app.Post("/api/v1/event", b.postEvent)
	app.Get("/api/v1/popular_game_modes", b.getPopular)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	errc := make(chan error, 1)
	go func() { errc <- app.Listen(*httpAddr) }()
	slog.Info("naive baseline listening (a benchmark baseline, not the product)", "addr", *httpAddr, "key_prefix", *prefix)
	select {
	case err := <-errc:
		return fmt.Errorf("listen %s: %w", *httpAddr, err)
	case <-ctx.Done():
	}
	_ = app.ShutdownWithTimeout(5 * time.Second)
	b.cleanup()
	return nil
}

// slotValue is a player's Redis value: "<region>,<game mode>".
func slotValue(region string, mode int) string { return region + "," + strconv.Itoa(mode) }

func (b *baseline) countsKey(region string) string { return b.prefix + "counts:" + region }

func (b *baseline) postEvent(c *fiber.Ctx) error {
	ctx := c.UserContext()
	ev, err := b.cat.DecodeEvent(c.Body(), time.Now())
	if err != nil {
		code := "invalid"
		if v, ok := domain.AsValidationError(err); ok {
			code = v.Code
		}
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": err.Error()}})
	}
	if ev.ID == "" {
		ev.ID = nuid.Next()
	}
	payload, _ := json.Marshal(map[string]any{"game_mode": ev.GameMode, "region": ev.Region})
	tag, err := b.pg.Exec(ctx, insertEvent, ev.ID, ev.UserID, ev.Type.String(), payload, ev.Timestamp)
	if err != nil {
		return unavailable(c, fmt.Errorf("insert event: %w", err))
	}
	if tag.RowsAffected() == 0 {
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"event_id": ev.ID, "duplicate": true})
	}
	key := b.prefix + "p:" + ev.Token()
	cur, err := b.rdb.Get(ctx, key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(c, fmt.Errorf("get player: %w", err))
	}
	next := slotValue(ev.Region, ev.GameMode)
	_, err = b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		switch ev.Type {
		case domain.EventLeave:
			if cur == next {
				p.Del(ctx, key)
				p.HIncrBy(ctx, b.countsKey(ev.Region), strconv.Itoa(ev.GameMode), -1)
			}
		default: // ENTER and HEARTBEAT: count in, move, or refresh
			p.Set(ctx, key, next, b.ttl)
			if cur != next {
				if region, mode, ok := strings.Cut(cur, ","); ok {
					p.HIncrBy(ctx, b.countsKey(region), mode, -1)
				}
				p.HIncrBy(ctx, b.countsKey(ev.Region), strconv.Itoa(ev.GameMode), 1)
			}
		}
		return nil
	})
	if err != nil {
		return unavailable(c, fmt.Errorf("update counts: %w", err))
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"event_id": ev.ID, "duplicate": false})
}

func unavailable(c *fiber.Ctx, err error) error {
	slog.Warn("event not stored", "err", err)
	c.Set(fiber.HeaderRetryAfter, "1")
	return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": fiber.Map{"code": "unavailable", "message": "store unavailable"}})
}

type modeCount struct {
	GameMode    int   `json:"game_mode"`
	PlayerCount int64 `json:"player_count"`
}

func (b *baseline) getPopular(c *fiber.Ctx) error {
	region := c.Query("region")
	if _, ok := b.cat.RegionIndex(region); !ok {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": fiber.Map{"code": "invalid_region", "message": "unknown region"}})
	}
	h, err := b.rdb.HGetAll(c.UserContext(), b.countsKey(region)).Result()
	if err != nil {
		return unavailable(c, fmt.Errorf("read counts: %w", err))
	}
	list := make([]modeCount, 0, len(h))
	for mode, n := range h {
		m, err1 := strconv.Atoi(mode)
		v, err2 := strconv.ParseInt(n, 10, 64)
		if err1 == nil && err2 == nil && v > 0 {
			list = append(list, modeCount{GameMode: m, PlayerCount: v})
		}
	}
	slices.SortFunc(list, func(a, b modeCount) int {
		return cmp.Or(cmp.Compare(b.PlayerCount, a.PlayerCount), cmp.Compare(a.GameMode, b.GameMode))
	})
	return c.JSON(fiber.Map{"region": region, "game_modes": list})
}

// cleanup deletes this process's keys.
func (b *baseline) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := b.rdb.Scan(ctx, 0, b.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			b.rdb.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		b.rdb.Unlink(ctx, keys...)
	}
}
