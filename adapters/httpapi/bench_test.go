package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// benchServer runs the edge on a real listener over an embedded NATS server.
func benchServer(b *testing.B) string {
	b.Helper()
	ns := natstest.RunServer(b)
	nc, _ := natstest.Connect(b, ns.ClientURL())
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := topology.Ensure(context.Background(), js, topology.Config{}); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	catalog := domain.DefaultCatalog()
	svc := ingest.NewService(catalog, jsadapter.NewEventPublisher(js), ingest.NewMetrics(reg))
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: svc, Lobby: lobby.NewView(catalog, nil), Gatherer: reg})
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return "http://" + srv.Addr()
}

func benchClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
}

// BenchmarkHTTPIngest posts events over a real connection: decode, validate,
// publish to JetStream and wait for the acknowledgement (file store).
func BenchmarkHTTPIngest(b *testing.B) {
	url := benchServer(b) + "/api/v1/event"
	client := benchClient()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"event_id":"b-%d","user_id":%d,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":%d,"region":"US"}}`, i, i%100000, 1+i%10)
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkLobbyGet reads a region's lobby list over a real connection.
func BenchmarkLobbyGet(b *testing.B) {
	url := benchServer(b) + "/api/v1/popular_game_modes?region=US"
	client := benchClient()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
}
