package main

import (
	"fmt"
	"math"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The engine's work per event, counted by the service itself and so not
// blurred by other processes on the machine the way CPU time is: the
// embedded NATS server's messages and bytes in and out
// (gamemodes_nats_server_*) and the Go heap allocations of the process
// (go_memstats_mallocs_total), read from --service-metrics before and after
// the send phase.

// engineReading is the counters at one moment; a missing one is NaN.
type engineReading struct {
	msgsIn, msgsOut, bytesIn, bytesOut, mallocs, gcs float64
}

// readEngine scrapes the service's Prometheus text metrics at url.
func readEngine(client *http.Client, url string) (engineReading, error) {
	r := engineReading{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}
	resp, err := client.Get(url)
	if err != nil {
		return r, fmt.Errorf("service metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("service metrics %s: status %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return r, fmt.Errorf("service metrics %s: %w", url, err)
	}
	byDirection := func(name string) (in, out float64) {
		in, out = math.NaN(), math.NaN()
		f := families[name]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" {
					switch l.GetValue() {
					case "in":
						in = value(m)
					case "out":
						out = value(m)
					}
				}
			}
		}
		return
	}
	r.msgsIn, r.msgsOut = byDirection("gamemodes_nats_server_messages_total")
	r.bytesIn, r.bytesOut = byDirection("gamemodes_nats_server_bytes_total")
	if f := families["go_memstats_mallocs_total"]; f != nil && len(f.GetMetric()) == 1 {
		r.mallocs = value(f.GetMetric()[0])
	}
	if f := families["go_gc_duration_seconds"]; f != nil && len(f.GetMetric()) == 1 && f.GetMetric()[0].GetSummary() != nil {
		r.gcs = float64(f.GetMetric()[0].GetSummary().GetSampleCount())
	}
	return r, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

// engineReport is the engine's work over the send phase per acknowledged
// event (fields absent when the service does not expose them).
type engineReport struct {
	MsgsInPerEvent   *float64 `json:"nats_msgs_in_per_event,omitempty"`
	MsgsOutPerEvent  *float64 `json:"nats_msgs_out_per_event,omitempty"`
	MsgsPerEvent     *float64 `json:"nats_msgs_per_event,omitempty"`
	BytesPerEvent    *float64 `json:"nats_bytes_per_event,omitempty"`
	AllocsPerEvent   *float64 `json:"allocs_per_event,omitempty"`
	GCCycles         *float64 `json:"gc_cycles,omitempty"`
	EventsPerGCCycle *float64 `json:"events_per_gc_cycle,omitempty"`
}

func engineBetween(a, b engineReading, events int64) engineReport {
	var rep engineReport
	if events <= 0 {
		return rep
	}
	per := func(x, y float64) *float64 {
		if math.IsNaN(x) || math.IsNaN(y) {
			return nil
		}
		v := math.Round((y-x)/float64(events)*100) / 100
		return &v
	}
	rep.MsgsInPerEvent = per(a.msgsIn, b.msgsIn)
	rep.MsgsOutPerEvent = per(a.msgsOut, b.msgsOut)
	rep.MsgsPerEvent = per(a.msgsIn+a.msgsOut, b.msgsIn+b.msgsOut)
	rep.BytesPerEvent = per(a.bytesIn+a.bytesOut, b.bytesIn+b.bytesOut)
	rep.AllocsPerEvent = per(a.mallocs, b.mallocs)
	if !math.IsNaN(a.gcs) && !math.IsNaN(b.gcs) {
		n := b.gcs - a.gcs
		rep.GCCycles = &n
		if n > 0 {
			e := math.Round(float64(events) / n)
			rep.EventsPerGCCycle = &e
		}
	}
	return rep
}

// metricsClient reads the service's metrics.
var metricsClient = &http.Client{Timeout: 10 * time.Second}
