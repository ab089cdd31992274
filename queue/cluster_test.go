package queue_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Scale-out faults with real processes: two web nodes and two workers (gibbon
// serve --nats, gibbon worker), nats-server in this process, the gallery on
// PostgreSQL. Every wait is bounded: a hang fails the test.

// A worker killed with SIGKILL mid-run: JetStream hands the job to the other
// worker after the ack wait, and the page's run finishes there. The run's Save
// works from the other web node, and the saved entry shows on both at once.
func TestClusterWorkerKilledMidRunFinishesOnTheOther(t *testing.T) {
	c := newCluster(t)
	a, b := c.web("web-a"), c.web("web-b")
	workers := []*proc{c.worker("w1"), c.worker("w2")}

	pg := openPage(t, a.base, "cookie-killed-worker")
	pg.send(pgdStart("mnist-cnn-small", 1000, 4))
	pg.until(30*time.Second, "frame")
	var victim, other *proc
	for i, w := range workers {
		if w.accepted() == 1 {
			victim, other = w, workers[1-i]
		}
	}
	if victim == nil {
		t.Fatalf("no worker says it accepted the run (w1 %d, w2 %d)", workers[0].accepted(), workers[1].accepted())
	}
	killed := time.Now()
	victim.kill(t)
	done := pg.until(60*time.Second, "done", "error")
	if done.Type != "done" || done.Stopped || done.Steps < 4*1001 { // every restart's every step
		t.Fatalf("after the worker died the page got %+v", done)
	}
	t.Logf("finished on %s %s after %s was killed", other.name, time.Since(killed).Round(time.Millisecond), victim.name)
	if !strings.Contains(other.log.String(), "delivery=2") {
		t.Errorf("%s did not say it took the second delivery:\n%s", other.name, other.log)
	}

	status, res := save(t, b.base, pg.cookie, done.Key, "finished on the other worker")
	if status != http.StatusCreated {
		t.Fatalf("saving on the other web node: %d %v", status, res)
	}
	for _, node := range []*proc{a, b} {
		if code, body := get(t, node.base+"/g/"+res["slug"]); code != http.StatusOK || !strings.Contains(body, "finished on the other worker") {
			t.Errorf("%s serves the new entry with %d", node.name, code)
		}
	}
	if status, res := save(t, a.base, pg.cookie, done.Key, "twice"); status != http.StatusConflict || !strings.Contains(res["error"], "saved already") {
		t.Errorf("a second save on the first node: %d %v", status, res)
	}
}

// A web node killed with SIGKILL: the other serves every permalink, and the
// worker that ran the dead node's page is free again for new runs.
func TestClusterWebNodeKilledTheOtherServesEveryPermalink(t *testing.T) {
	c := newCluster(t)
	a, b := c.web("web-a"), c.web("web-b")
	w := c.worker("w1")

	var slugs []string
	for i, node := range []*proc{a, b, a} {
		pg := openPage(t, node.base, "browser on "+node.name)
		done := pg.runToEnd(pgdStart("mnist-cnn-small", 10, 0), 60*time.Second)
		status, res := save(t, node.base, pg.cookie, done.Key, "entry "+string(rune('A'+i)))
		if status != http.StatusCreated {
			t.Fatalf("save on %s: %d %v", node.name, status, res)
		}
		slugs = append(slugs, res["slug"])
	}
	// A long run on the node about to die.
	pg := openPage(t, a.base, "cookie-dying-node")
	pg.send(pgdStart("mnist-cnn-small", 1000, 10))
	pg.until(30*time.Second, "frame")
	a.kill(t)
	if _, err := pg.read(5 * time.Second); err == nil {
		t.Error("the dead node's page still reads messages")
	}
	for _, slug := range slugs {
		if code, _ := get(t, b.base+"/g/"+slug); code != http.StatusOK {
			t.Errorf("%s serves /g/%s with %d after %s died", b.name, slug, code, a.name)
		}
		if code, _ := get(t, b.base+"/g/"+slug+"/adversarial.png"); code != http.StatusOK {
			t.Errorf("%s serves /g/%s/adversarial.png with %d", b.name, slug, code)
		}
	}
	// The worker drops the dead node's run at its next heartbeat and takes the next.
	start := time.Now()
	openPage(t, b.base, "cookie-after").runToEnd(pgdStart("mnist-cnn-small", 10, 0), 60*time.Second)
	t.Logf("a new run finished %s after the node died", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(w.log.String(), "web node that asked for the run is gone") && !strings.Contains(w.log.String(), "no longer wants") {
		t.Errorf("the worker did not drop the dead node's run:\n%s", w.log)
	}
}

// NATS restarted: pages with a run going hear at once that the queue's
// connection was lost; once the server is back, new runs work.
func TestClusterNATSRestartedRunningPagesHearItNewRunsWork(t *testing.T) {
	c := newCluster(t)
	a := c.web("web-a")
	c.worker("w1")

	pg := openPage(t, a.base, "cookie-restart")
	pg.send(pgdStart("mnist-cnn-small", 1000, 10))
	pg.until(30*time.Second, "frame")
	c.restartNATS()
	m := pg.until(10*time.Second, "error", "done")
	if m.Type != "error" || !strings.Contains(m.Message, "connection to the job queue (NATS) was lost") {
		t.Fatalf("a running page heard %+v", m)
	}
	// New runs: the web node and the worker reconnect on their own.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pg.send(pgdStart("mnist-cnn-small", 10, 0))
		m := pg.until(60*time.Second, "done", "error")
		if m.Type == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the restart runs still fail: %s", m.Message)
		}
		t.Logf("not yet: %s", m.Message)
		time.Sleep(500 * time.Millisecond)
	}
}

// A worker without the run's model never receives it: runs attacking a model
// only one worker has all go to that worker.
func TestClusterWorkerWithoutTheModelNeverReceivesIt(t *testing.T) {
	c := newCluster(t)
	a := c.web("web-a")
	plain, full := c.worker("plain"), c.worker("full", "--models", c.extra)

	pg := openPage(t, a.base, "cookie-models")
	for range 3 {
		pg.runToEnd(pgdStart(extraModel, 10, 0), 60*time.Second)
	}
	if plain.accepted() != 0 || full.accepted() != 3 {
		t.Fatalf("runs on %s went to the worker without it %d times, to the one with it %d times", extraModel, plain.accepted(), full.accepted())
	}
	if strings.Contains(plain.log.String(), "dropped") {
		t.Errorf("the worker without the model received a job:\n%s", plain.log)
	}
}

// A data set sweep whose worker is killed with SIGKILL mid-run: JetStream hands
// it to the other worker, which runs it again from the start; the page, which
// had its start and some progress, gets the rest and the whole result, and the
// run saves from the web node.
func TestClusterSweepSurvivesAKilledWorker(t *testing.T) {
	c := newCluster(t)
	a := c.web("web-a")
	workers := []*proc{c.worker("w1"), c.worker("w2")}

	pg := openSweepPage(t, a.base, "cookie-killed-sweep")
	pg.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "attack": "pgd",
		"models": []string{"mnist-cnn-small"}, "defences": []string{"mnist-cnn-small", "mnist-mlp"},
		"eps": "0:0.2:0.1", "steps": 20, "n": 200, "batch": 10, "seed": 5, "label": -1}})
	pg.until(60*time.Second, "progress")
	var victim, other *proc
	for i, w := range workers {
		if w.accepted() == 1 {
			victim, other = w, workers[1-i]
		}
	}
	if victim == nil {
		t.Fatalf("no worker says it accepted the sweep (w1 %d, w2 %d)", workers[0].accepted(), workers[1].accepted())
	}
	killed := time.Now()
	victim.kill(t)
	done := pg.until(120*time.Second, "done", "error")
	if done.Type != "done" {
		t.Fatalf("after the worker died the page got %+v", done)
	}
	t.Logf("finished on %s %s after %s was killed", other.name, time.Since(killed).Round(time.Millisecond), victim.name)
	var res struct{ N, Total int }
	if err := json.Unmarshal(done.Result, &res); err != nil || res.N != 200 || res.Total != 200 {
		t.Fatalf("the result covers %d of %d images (%v)", res.N, res.Total, err)
	}
	if !strings.Contains(other.log.String(), "delivery=2") {
		t.Errorf("%s did not say it took the second delivery:\n%s", other.name, other.log)
	}
	if status, saved := save(t, a.base, pg.cookie, done.Key, "sweep finished on the other worker"); status != http.StatusCreated {
		t.Fatalf("saving the sweep: %d %v", status, saved)
	}
}
