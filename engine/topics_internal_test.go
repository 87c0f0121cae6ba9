package engine

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKeepForeverRetriesUnknownTopic: a replica that lost the race to
// create an internal topic may ask a broker that does not know it yet. That
// answer (UNKNOWN_TOPIC_OR_PARTITION) is retried, so the topic still gets
// its retention, and no warning says records may be lost.
func TestKeepForeverRetriesUnknownTopic(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "g-pipe-merge"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	unknown := 2 // the first describes do not know the topic
	cluster.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if unknown == 0 {
			return nil, nil, false
		}
		unknown--
		cluster.KeepControl()
		r := req.(*kmsg.DescribeConfigsRequest)
		resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, res := range r.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
			rr.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var logs bytes.Buffer
	keepForever(context.Background(), adm, "g-pipe-merge", slog.New(slog.NewTextHandler(&logs, nil)))
	if strings.Contains(logs.String(), "WARN") {
		t.Errorf("warned: %s", logs.String())
	}
	rcs, err := adm.DescribeTopicConfigs(context.Background(), "g-pipe-merge")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("g-pipe-merge", nil)
	if err != nil {
		t.Fatal(err)
	}
	var retention string
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			retention = c.MaybeValue()
		}
	}
	if retention != "-1" {
		t.Errorf("retention.ms %q, want -1", retention)
	}
}
