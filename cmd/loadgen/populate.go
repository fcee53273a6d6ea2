package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// populateSummary is the JSON line `loadgen populate` prints.
type populateSummary struct {
	Mode       string  `json:"mode"`
	Players    int     `json:"players"`
	Seconds    float64 `json:"publish_seconds"`
	Rate       float64 `json:"rate"`
	SettleSecs float64 `json:"settle_seconds"`
	Verify     string  `json:"verify"`
}

// populate makes a population resident: players 0..N-1 ENTER once each
// over NATS (regions and modes round robin), then the lobby totals must
// equal the population. Used by the 10-million-player scenario.
func populate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("populate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS URL of the service")
	httpURL := fs.String("http-url", "http://127.0.0.1:8080", "HTTP edge of the service (verification)")
	players := fs.Int("players", 10_000_000, "players to enter")
	regionsFlag := fs.String("regions", strings.Join(domain.DefaultRegions, ","), "regions")
	modesFlag := fs.String("game-modes", "1-10", "game modes")
	pending := fs.Int("max-pending", 8192, "publishes awaiting acknowledgement")
	prefix := fs.String("user-prefix", "res", "user id prefix")
	settle := fs.Duration("settle", 10*time.Minute, "how long the lobby may take to show every player")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	regions := domain.ParseRegions(*regionsFlag)
	modes, err := domain.ParseGameModes(*modesFlag)
	if err != nil {
		fmt.Fprintln(stderr, "populate:", err)
		return 2
	}
	nc, err := nats.Connect(*natsURL)
	if err != nil {
		fmt.Fprintln(stderr, "populate:", err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(*pending))
	if err != nil {
		fmt.Fprintln(stderr, "populate:", err)
		return 1
	}
	want := map[string]map[int]int64{}
	start := time.Now()
	const chunk = 50_000
	futures := make([]jetstream.PubAckFuture, 0, chunk)
	for i := 0; i < *players; i++ {
		region, mode := regions[i%len(regions)], modes[(i/len(regions))%len(modes)]
		user := *prefix + strconv.Itoa(i)
		id := *prefix + "-e" + strconv.Itoa(i)
		body := fmt.Sprintf(`{"event_id":%q,"user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":%d,"region":%q}}`, id, user, mode, region)
		for {
			f, err := js.PublishAsync(topology.EventSubject(region, domain.UserToken(user)), []byte(body), jetstream.WithMsgID(id))
			if err == nil {
				futures = append(futures, f)
				break
			}
			<-js.PublishAsyncComplete()
		}
		if want[region] == nil {
			want[region] = map[int]int64{}
		}
		want[region][mode]++
		if len(futures) == chunk || i == *players-1 {
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					fmt.Fprintf(stderr, "populate: publish: %v\n", err)
					return 1
				}
			}
			futures = futures[:0]
			fmt.Fprintf(stderr, "populate: %d players, %.0f/s\n", i+1, float64(i+1)/time.Since(start).Seconds())
		}
	}
	sum := populateSummary{Mode: "populate", Players: *players, Seconds: time.Since(start).Seconds()}
	sum.Rate = float64(*players) / sum.Seconds
	target, err := workload.NewHTTPTarget(*httpURL, "", 4, 10*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "populate:", err)
		return 2
	}
	settleStart := time.Now()
	sum.Verify = "fail"
	ctx, cancel := context.WithTimeout(context.Background(), *settle)
	defer cancel()
	for ctx.Err() == nil {
		ok := true
		for _, r := range regions {
			got, err := target.Lobby(r)
			if err != nil || !equalModes(got, want[r]) {
				ok = false
				break
			}
		}
		if ok {
			sum.Verify = "pass"
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	sum.SettleSecs = time.Since(settleStart).Seconds()
	line, _ := json.Marshal(sum)
	fmt.Fprintln(stdout, string(line))
	if sum.Verify != "pass" {
		return 1
	}
	return 0
}

func equalModes(got, want map[int]int64) bool {
	if len(got) != len(want) {
		return false
	}
	for m, n := range want {
		if got[m] != n {
			return false
		}
	}
	return true
}
