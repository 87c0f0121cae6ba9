package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamerio/streamer/engine"
)

// tableStaleness is streamer_table_staleness_seconds: per open table
// partition, how long records have waited for it to catch up to its
// topic's last stable offset, counted from when it last was (0 while no
// records wait: see engine.TableFreshness for an idle stream). It is
// computed at each scrape, so that it grows while the wait lasts.
type tableStaleness struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	since map[[2]string]time.Time // {table, partition} → BehindSince
}

func newTableStaleness() *tableStaleness {
	return &tableStaleness{
		desc: prometheus.NewDesc("streamer_table_staleness_seconds",
			"Per open table partition, how long the records that join it have waited for it to catch up to its topic's last stable offset, since it last was; 0 while none wait (an idle stream included).",
			[]string{"table", "partition"}, nil),
		since: map[[2]string]time.Time{},
	}
}

func (c *tableStaleness) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *tableStaleness) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, since := range c.since {
		v := 0.0
		if !since.IsZero() {
			v = max(0, now.Sub(since).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, k[0], k[1])
	}
}

func (c *tableStaleness) set(f engine.TableFreshness) {
	k := [2]string{f.Table, strconv.Itoa(int(f.Partition))}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Closed {
		delete(c.since, k)
		return
	}
	c.since[k] = f.BehindSince
}

// OnTableFreshness implements engine.TableHook.
func (m *Metrics) OnTableFreshness(f engine.TableFreshness) { m.tableStale.set(f) }

// OnTableRowSkipped implements engine.TableSkipHook.
func (m *Metrics) OnTableRowSkipped(table string, _ int32) {
	m.tableSkipped.WithLabelValues(table).Inc()
}
