package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"
)

// TestDashboardAndRulesAgainstPrometheus runs a replica on real traffic,
// scrapes it with a real Prometheus (Debian's prometheus package, which
// make test installs), and evaluates every expression of the Grafana
// dashboard and of the alert rules through Prometheus's HTTP API: each must
// return data.
func TestDashboardAndRulesAgainstPrometheus(t *testing.T) {
	requireIntegration(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make test installs Debian's package): %v", err)
	}
	if out, err := exec.Command("promtool", "check", "rules", "../deploy/prometheus/rules.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	e := newEnv(t)
	e.createTopic("in", 3)
	// filterMap plus a stateful branch and a model, so the state and model
	// panels have data.
	withState := strings.Replace(filterMap, "  dlq:\n", "  stats:\n    topic: {{topic \"stats\"}}\n    create: {partitions: 3}\n  scored:\n    topic: {{topic \"scored\"}}\n    create: {partitions: 3}\n"+
		"  customers:\n    topic: {{topic \"customers\"}}\n    table: partitioned\n  joined:\n    topic: {{topic \"joined\"}}\n    create: {partitions: 3}\n  dlq:\n", 1)
	// ... and a table join, so the table panel has data.
	e.createTopic("customers", 3)
	var rows []*kgo.Record
	for k := range 97 {
		rows = append(rows, &kgo.Record{Key: []byte("k" + strconv.Itoa(k)), Value: []byte(`{"name":"c` + strconv.Itoa(k) + `"}`)})
	}
	e.produceQuiet("customers", rows)
	model, err := os.ReadFile("../ml/testdata/xgb-binary.json")
	if err != nil {
		t.Fatal(err)
	}
	file := e.writeTopology(withState+`
  per-key:
    from: kept
    to: stats
    on_error: skip
    aggregate:
      fields: {n: {op: count}}
  score:
    from: kept
    to: scored
    predict:
      model: {type: xgboost, path: model.json}
      features: [{expr: id}, {expr: n % 7}, {expr: n % 3}, {expr: id / 1000.0}, {expr: 1}, {expr: n % 2 == 0}]
      output: [score]
  enrich:
    from: kept
    to: joined
    join: {table: customers, fields: {name: name}}
`, map[string]string{"model.json": string(model)})
	metricsPort, promPort := freePort(t), freePort(t)
	r := e.startArgs(file, "r1", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", metricsPort))

	// Traffic for the whole test, with a few bad records for the DLQ.
	stop := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; ; i += 200 {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			recs := inputRecords(i, i+200)
			recs[7].Value = []byte(`{"id":` + strconv.Itoa(i+7) + `,"n":`)
			e.produceQuiet("in", recs)
		}
	}()
	defer func() { close(stop); <-produced }()

	// Health endpoints.
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	waitFor(t, "the replica to be ready", 60*time.Second, func() bool { return httpStatus(base+"/readyz") == 200 })
	if s := httpStatus(base + "/healthz"); s != 200 {
		t.Fatalf("/healthz: %d", s)
	}

	// Prometheus, scraping every second and evaluating the rules.
	dir := t.TempDir()
	rules, _ := filepath.Abs("../deploy/prometheus/rules.yml")
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: streamer\n    static_configs:\n      - targets: [\"127.0.0.1:%d\"]\n", rules, metricsPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	promLog, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prom.Process.Kill(); _ = prom.Wait() }()
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1", promPort)

	waitFor(t, "Prometheus to record traffic", 90*time.Second, func() bool {
		res, err := query(api, `sum(rate(streamer_output_records_total[10s])) > 0`)
		return err == nil && len(res) > 0
	})
	// A little more history, so that rates over the dashboard's window
	// have several samples.
	time.Sleep(5 * time.Second)

	// Every dashboard expression returns data.
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../deploy/grafana/streamer-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	subst := strings.NewReplacer("$__rate_interval", "10s", "$job", ".*", "$pipe", ".*")
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			n++
			expr := subst.Replace(tg.Expr)
			res, err := query(api, expr)
			if err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, expr, err)
			} else if len(res) == 0 {
				t.Errorf("panel %q: %s returned no data", p.Title, expr)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d dashboard expressions found", n)
	}

	// Every rule is healthy in Prometheus, and the quantity it watches has
	// data.
	var rf struct {
		Groups []struct {
			Rules []struct {
				Name        string `yaml:"alert"`
				Expr        string `yaml:"expr"`
				Annotations struct {
					Signal string `yaml:"signal"`
				} `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	rb, _ := os.ReadFile(rules)
	if err := yaml.Unmarshal(rb, &rf); err != nil {
		t.Fatal(err)
	}
	health := ruleHealth(t, api)
	for _, g := range rf.Groups {
		for _, rule := range g.Rules {
			if h := health[rule.Name]; h != "ok" {
				t.Errorf("rule %s: health %q in Prometheus", rule.Name, h)
			}
			if _, err := query(api, rule.Expr); err != nil {
				t.Errorf("rule %s: %v", rule.Name, err)
			}
			if rule.Annotations.Signal == "" {
				t.Errorf("rule %s has no signal annotation", rule.Name)
				continue
			}
			if res, err := query(api, rule.Annotations.Signal); err != nil || len(res) == 0 {
				t.Errorf("rule %s: signal %s returned no data (%v)", rule.Name, rule.Annotations.Signal, err)
			}
		}
	}
	if len(health) < 5 {
		t.Errorf("Prometheus loaded %d rules: %v", len(health), health)
	}
	if took, code := r.stop(t); code != 0 {
		t.Errorf("replica exit %d after %v", code, took)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func httpStatus(u string) int {
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// query runs an instant query and returns its result samples.
func query(api, expr string) ([]json.RawMessage, error) {
	resp, err := http.Get(api + "/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", out.Error)
	}
	return out.Data.Result, nil
}

// ruleHealth returns each alerting rule's health once all were evaluated.
func ruleHealth(t *testing.T, api string) map[string]string {
	t.Helper()
	var health map[string]string
	waitFor(t, "the rules to be evaluated", 30*time.Second, func() bool {
		resp, err := http.Get(api + "/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string    `json:"name"`
						Health         string    `json:"health"`
						LastEvaluation time.Time `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&out) != nil {
			return false
		}
		health = map[string]string{}
		for _, g := range out.Data.Groups {
			for _, r := range g.Rules {
				if r.LastEvaluation.IsZero() || r.LastEvaluation.Year() < 2000 {
					return false
				}
				health[r.Name] = r.Health
			}
		}
		return len(health) > 0
	})
	return health
}
