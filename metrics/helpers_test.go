package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/streamerio/streamer/metrics"
)

// collect returns a collector of the one series of a family with labels.
func collect(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return constCounter(name, s)
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

func constCounter(name string, s *dto.Metric) prometheus.Collector {
	v := s.GetCounter().GetValue()
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name}, func() float64 { return v })
}
