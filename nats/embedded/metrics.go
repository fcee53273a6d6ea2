package embedded

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the embedded server's message and byte counters (its
// varz) as Prometheus counters: every message a client sent it (in:
// publishes, acknowledgements, requests) and it sent a client (out:
// deliveries, publish acknowledgements, answers). Divided by the events
// handled, they are the engine messages per event.
type Collector struct {
	ns       *server.Server
	msgs     *prometheus.Desc
	bytes    *prometheus.Desc
	slowCons *prometheus.Desc
}

// NewCollector returns a collector reading ns at every scrape.
func NewCollector(ns *server.Server) *Collector {
	return &Collector{
		ns: ns,
		msgs: prometheus.NewDesc("gamemodes_nats_server_messages_total",
			"Messages the embedded NATS server received from clients (direction in) and sent to clients (out).", []string{"direction"}, nil),
		bytes: prometheus.NewDesc("gamemodes_nats_server_bytes_total",
			"Payload bytes the embedded NATS server received from clients (in) and sent to clients (out).", []string{"direction"}, nil),
		slowCons: prometheus.NewDesc("gamemodes_nats_server_slow_consumers_total",
			"Clients the embedded NATS server found too slow and disconnected or dropped messages for.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.msgs
	ch <- c.bytes
	ch <- c.slowCons
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	v, err := c.ns.Varz(nil)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.CounterValue, float64(v.InMsgs), "in")
	ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.CounterValue, float64(v.OutMsgs), "out")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.InBytes), "in")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.OutBytes), "out")
	ch <- prometheus.MustNewConstMetric(c.slowCons, prometheus.CounterValue, float64(v.SlowConsumers))
}
