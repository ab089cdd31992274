package queue_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gibbon/gallery/pgtest"
)

// gibbonBin is the gibbon binary the cluster tests run as separate processes,
// built once by TestMain when a selected test needs it.
var gibbonBin string

// clusterTests are the tests that run gibbon processes.
var clusterTests = []string{
	"TestClusterWorkerKilledMidRunFinishesOnTheOther",
	"TestClusterWebNodeKilledTheOtherServesEveryPermalink",
	"TestClusterNATSRestartedRunningPagesHearItNewRunsWork",
	"TestClusterWorkerWithoutTheModelNeverReceivesIt",
	"TestClusterSweepSurvivesAKilledWorker",
}

func TestMain(m *testing.M) {
	flag.Parse()
	if needsBinary() {
		dir, err := os.MkdirTemp("", "gibbon-queue-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		gibbonBin = filepath.Join(dir, "gibbon")
		build := exec.Command("go", "build", "-o", gibbonBin, "gibbon")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build gibbon:", err)
			os.Exit(1)
		}
		code := pgtest.Main(m)
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(pgtest.Main(m))
}

// needsBinary reports whether -run selects a cluster test (go test's own
// matching is per level; a top-level match is what decides here).
func needsBinary() bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	top, _, _ := strings.Cut(f.Value.String(), "/")
	re, err := regexp.Compile(top)
	if err != nil {
		return true
	}
	for _, name := range clusterTests {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}
