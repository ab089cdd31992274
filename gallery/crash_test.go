package gallery_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

const crashChildEnv = "GIBBON_GALLERY_CRASH_CHILD"

// TestCrashMidSave kills a process that is saving in a loop (SIGKILL, no
// chance to clean up), several times over the same gallery, then checks it is
// sound, every save the child saw committed is there, and no entry is half
// written.
func TestCrashMidSave(t *testing.T) {
	if target := os.Getenv(crashChildEnv); target != "" {
		crashChild(t, target)
		return
	}
	eachBackend(t, testCrashMidSave)
}

func testCrashMidSave(t *testing.T, be backend) {
	ctx := context.Background()
	path := be.newTarget(t)
	rng := rand.New(rand.NewPCG(7, 7))
	var committed []string
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidSave$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, "GIBBON_GALLERY_CRASH_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		want := 2 + rng.IntN(6) // saves to let through before the kill
		for n := 0; n < want && lines.Scan(); {
			if line := lines.Text(); gallery.ValidSlug(line) {
				committed = append(committed, line)
				n++
			}
		}
		// Kill at a random moment inside the next saves.
		time.Sleep(time.Duration(rng.IntN(4000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for lines.Scan() { // commits reported before the kill landed
			if line := lines.Text(); gallery.ValidSlug(line) {
				committed = append(committed, line)
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v before it was killed", round, err)
		}

		s, err := gallery.Open(ctx, path)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, slug := range committed {
			e, err := s.Get(ctx, slug)
			if err != nil {
				t.Fatalf("round %d: committed entry %s: %v", round, slug, err)
			}
			if len(e.Steps) != crashSteps || len(e.Models) != 3 {
				t.Fatalf("round %d: entry %s has %d steps and %d models", round, slug, len(e.Steps), len(e.Models))
			}
			if _, _, err := s.Images(ctx, e); err != nil {
				t.Fatalf("round %d: entry %s images: %v", round, slug, err)
			}
		}
		// Each kill may land between a commit and its printed slug: at most one
		// entry per round more than the child reported, never a partial one.
		p, err := s.List(ctx, gallery.ListOptions{Limit: gallery.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(p.Entries); n < len(committed) || n > len(committed)+round+1 {
			t.Fatalf("round %d: %d entries stored, child reported %d", round, n, len(committed))
		}
		s.Close()
	}
	t.Logf("%d saves committed across 5 kills", len(committed))
}

const crashSteps = 1500 // a long transaction, so the kill often lands inside one

// crashChild saves entries until it is killed, printing each slug once committed.
func crashChild(t *testing.T, target string) {
	ctx := context.Background()
	s, err := gallery.Open(ctx, target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	round, _ := strconv.Atoi(os.Getenv("GIBBON_GALLERY_CRASH_ROUND"))
	var shared []byte
	for i := 0; ; i++ {
		e := gallerytest.Run(uint64(round*100000+i), gallerytest.Options{
			Width: 64, Height: 64, RGB: true, Steps: crashSteps, Models: []string{"a", "b", "c"},
		})
		if shared == nil {
			shared = e.Original
		}
		if i%3 == 0 {
			e.Original = shared // some images shared between entries
		}
		rec, err := s.Save(ctx, e)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(4)
		}
		fmt.Println(rec.Slug)
	}
}
