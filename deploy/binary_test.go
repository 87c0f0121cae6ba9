package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The paths streamer serves on STREAMER_METRICS_ADDR (cli/serve.go);
// runAsInPod checks them against the binary.
const (
	healthPath  = "/healthz"
	readyPath   = "/readyz"
	metricsPath = "/metrics"
)

// bin is the streamer binary the image holds, built by TestMain the way
// deploy/image/rootfs.sh builds it.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "streamer-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "streamer")
	build := exec.Command("go", "build", "-tags", "nolanguage", "-o", bin, "./cmd/streamer")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building streamer: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaryHelp is the help of streamer and streamer run, which name every
// environment variable they read.
func binaryHelp(t *testing.T) string {
	t.Helper()
	var all []byte
	for _, args := range [][]string{{"--help"}, {"run", "--help"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("streamer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		all = append(all, out...)
	}
	return string(all)
}

// runAsInPod starts the binary as the pod would (its args, its env, its
// files from the ConfigMaps), with the container's paths below a temporary
// directory, an in-process Kafka (kfake) for the brokers and a free port
// for the metrics address, and checks that the probes' and the scrape
// annotations' paths answer there: liveness at once, readiness once the
// replica holds its partitions, metrics with streamer's. Then SIGTERM
// must stop it cleanly within 10 s.
func runAsInPod(t *testing.T, r *rendered, sts *appsv1.StatefulSet, c *corev1.Container) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	root := t.TempDir()
	pod := &sts.Spec.Template.Spec
	for _, m := range c.VolumeMounts {
		v := volume(pod, m.Name)
		if v == nil || v.ConfigMap == nil {
			continue
		}
		for k, data := range r.configMaps[v.ConfigMap.Name].Data {
			if v.ConfigMap.Items != nil {
				continue // none in these manifests; the static checks cover items
			}
			write(t, filepath.Join(root, m.MountPath, k), data)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, c.Args[0], filepath.Join(root, c.Args[1]))
	cmd.Env = []string{"HOME=" + root, "PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.Name == "STREAMER_BROKERS":
			v = strings.Join(cluster.ListenAddrs(), ",")
		case e.Name == "STREAMER_METRICS_ADDR":
			v = addr
		case e.Name == "STREAMER_STATE_DIR":
			v = filepath.Join(root, e.Value)
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = sts.Name + "-0"
		case e.ValueFrom != nil:
			t.Fatalf("env %s: runAsInPod does not resolve %+v", e.Name, e.ValueFrom)
		}
		cmd.Env = append(cmd.Env, e.Name+"="+v)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("streamer's output:\n%s", logs.String())
		}
	}()

	base := "http://" + addr
	get := func(path string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what, path string, within time.Duration) {
		t.Helper()
		start := time.Now()
		deadline := start.Add(within)
		for {
			code, body := get(path)
			if code == http.StatusOK {
				t.Logf("%s path %s: 200 after %s", what, path, time.Since(start).Round(time.Millisecond))
				return
			}
			select {
			case err := <-exited:
				t.Fatalf("streamer exited (%v) before its %s path %s answered 200", err, what, path)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s path %s: %d %q after %s; want 200", what, path, code, strings.TrimSpace(body), within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("liveness", c.LivenessProbe.HTTPGet.Path, 15*time.Second)
	waitFor("readiness", c.ReadinessProbe.HTTPGet.Path, 60*time.Second)
	code, body := get(sts.Spec.Template.Annotations["prometheus.io/path"])
	if code != http.StatusOK || !strings.Contains(body, "streamer_") {
		t.Errorf("scrape path %s: %d, streamer metrics %t", sts.Spec.Template.Annotations["prometheus.io/path"], code, strings.Contains(body, "streamer_"))
	}
	if code, _ := get("/no-such-path"); code != http.StatusNotFound {
		t.Errorf("an unknown path answers %d: the checks above prove nothing", code)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("streamer exited with %v on SIGTERM; want 0", err)
		}
		t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Error("streamer did not stop within 10 s of SIGTERM")
	}
}

func write(t *testing.T, file, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
