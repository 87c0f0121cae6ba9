package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

const kserveTopology = `
name: {{.ID}}
dead_letter: dlq
datasets:
  in:
    topic: {{topic "in"}}
  out:
    topic: {{topic "out"}}
    create: {partitions: 4}
  dlq:
    topic: {{topic "dlq"}}
    value: bytes
    create: {partitions: 1}
pipes:
  score:
    from: in
    to: out
    predict:
      model: {type: kserve, url: "URL", name: xgb-binary}
      features: [{expr: f0}, {expr: f1}, {expr: f2}, {expr: f3}, {expr: f4}, {expr: f5}]
      output: [score]
      batch: {max_rows: 128}
      timeout: 500ms
      retries: 2
`

// TestKServePipelineSurvivesServerRestart runs a predict pipe against the
// real MLServer over gRPC, and stops the server mid-run, then starts it
// again. While it is down the replica must pause (abort, back off, retry
// the same records), not dead-letter them or stop. In the end every record
// is scored exactly once, with the xgboost library's score for its row.
func TestKServePipelineSurvivesServerRestart(t *testing.T) {
	requireIntegration(t)
	urls := mlserverURLs(t)
	c := loadXGBCase(t, "binary")
	rows := len(c.want)
	e := newEnv(t)
	e.createTopic("in", 4)
	file := e.writeTopology(strings.Replace(kserveTopology, "URL", urls["grpc"], 1), nil)
	group := "streamer-" + e.id

	records := func(from, to int) []*kgo.Record {
		recs := make([]*kgo.Record, 0, to-from)
		for i := from; i < to; i++ {
			v := map[string]any{"id": i}
			for j := range 6 {
				if x := c.rows[(i%rows)*6+j]; !math.IsNaN(float64(x)) {
					v[fmt.Sprintf("f%d", j)] = x
				}
			}
			b, _ := json.Marshal(v)
			recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(i%31)), Value: b})
		}
		return recs
	}
	const n = 6000
	e.produce("in", records(0, 2000))
	r := e.start(file, "r1")
	e.waitLagBelow(group, "in", 1, r)

	mls := func(cmd string) {
		t.Helper()
		if out, err := exec.Command("../scripts/mlserver/mlserver.sh", cmd).CombinedOutput(); err != nil {
			t.Fatalf("mlserver.sh %s: %v\n%s", cmd, err, out)
		}
	}
	mls("stop")
	restarted := false
	defer func() {
		if !restarted {
			mls("start") // leave the server up for the other tests
		}
	}()
	e.produce("in", records(2000, 4000))
	waitFor(t, "the replica to pause while MLServer is down", time.Minute, func() bool {
		return strings.Count(r.logText(), "dependency is unavailable") >= 2
	})
	if r.exited() {
		t.Fatalf("the replica stopped while the server was down:\n%s", r.logText())
	}
	mls("start")
	restarted = true
	e.produce("in", records(4000, n))
	e.waitConsumed(group, "in", []*replica{r}, 3*time.Minute)
	if _, code := r.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}

	seen := map[int]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	worst := 0.0
	err := topicread.All(ctx, brokers, 3*time.Second, func(rec *kgo.Record) {
		var v struct {
			ID    int
			Score float64
		}
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			t.Fatalf("output %s: %v", rec.Value, err)
		}
		seen[v.ID]++
		worst = max(worst, math.Abs(v.Score-c.want[v.ID%rows]))
	}, e.topic("out"))
	if err != nil {
		t.Fatal(err)
	}
	dups, missing := 0, 0
	for i := range n {
		switch seen[i] {
		case 0:
			missing++
		case 1:
		default:
			dups++
		}
	}
	if dups != 0 || missing != 0 {
		t.Fatalf("%d duplicated, %d missing of %d", dups, missing, n)
	}
	if worst > 1e-5 {
		t.Fatalf("largest difference from xgboost %g, want within 1e-5", worst)
	}
	dead := 0
	if err := topicread.All(ctx, brokers, 2*time.Second, func(*kgo.Record) { dead++ }, e.topic("dlq")); err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Fatalf("%d records dead-lettered because the server was down", dead)
	}
	t.Logf("%d records scored exactly once across a server restart (largest difference from xgboost %.2g); %d pauses logged",
		n, worst, strings.Count(r.logText(), "dependency is unavailable"))
}
