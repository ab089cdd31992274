package main

import (
	"context"
	"fmt"
	"io"

	"gibbon/inference/sweep"
)

// cmdTransfer crafts adversarial images on each source and judges them on every target.
func cmdTransfer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("transfer", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: gibbon transfer [--sources A,B,...] [--targets C,...] [--attack pgd] [--eps 0.2] [--n 500] [flags]")
		fmt.Fprintln(stderr, "The transfer matrix: the attack run on each source (a classifier, or net:NAME, an attack network)")
		fmt.Fprintln(stderr, "and its images shown to each target; a cell is the share of the images the target got right that")
		fmt.Fprintln(stderr, "it then gets wrong.")
		fs.PrintDefaults()
	}
	var f runFlags
	f.register(fs, sweep.KindTransfer)
	sources := fs.String("sources", "", "classifiers (and net:NAME attack networks) to craft on (default: every one taking the first classifier's input)")
	fs.StringVar(&f.defences, "targets", "", "MODEL or MODEL+KIND[:PARAM], comma-separated (default: every classifier taking that input)")
	method := fs.String("attack", "pgd", "the attack run on each classifier source")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"transfer takes no arguments, only flags (see gibbon transfer -h)"}
	}
	if f.threads < 1 {
		return usageError{"--threads must be at least 1"}
	}
	s := sweep.Settings{Kind: sweep.KindTransfer, Attack: *method, Models: splitList(*sources), Defences: splitList(f.defences),
		Eps: f.eps, Steps: f.steps, Dataset: f.dataset, N: f.n, Batch: f.batch, Seed: seedFrom(fs, f.seed), Label: -1}
	z, plan, err := openPlan(ctx, f, s, stderr)
	if err != nil {
		return err
	}
	defer z.close()
	x, labels, err := loadSet(ctx, plan)
	if err != nil {
		return err
	}
	s = plan.Settings
	bar := newProgressBar(stderr, "transfer", len(labels))
	t, err := sweep.Transfer(ctx, sweep.TransferSpec{Dataset: s.Dataset, Sources: plan.Attacks, Targets: plan.Defences, Images: x, Labels: labels,
		Range: plan.Range, Eps: plan.Eps[0], Batch: s.Batch, Seed: s.Seed}, func(t *sweep.TransferMatrix) error { bar.set(t.N); return nil })
	bar.done()
	if err != nil {
		return err
	}
	if err := writeCSVFile(f.csvPath, stdout, t.WriteCSV); err != nil {
		return err
	}
	if f.jsonOut {
		if err := writeJSON(stdout, t); err != nil {
			return err
		}
	} else if f.csvPath != "-" {
		fmt.Fprintf(stdout, "%s transfer at ε %s on %d %s images; seed %d\n", s.Attack, sweep.FormatEps(plan.Eps[0], plan.Range), t.N, t.Dataset, t.Seed)
		fmt.Fprintln(stdout, "cells: share of the images the target classifies correctly that it misclassifies after the source's attack")
		rows := [][]string{{"source \\ target"}}
		for _, tg := range t.Targets {
			rows[0] = append(rows[0], tg.Name)
		}
		for s, src := range t.Sources {
			row := []string{src.Name}
			for d := range t.Targets {
				row = append(row, fmt.Sprintf("%.1f%%", 100*t.Rate[s][d]))
			}
			rows = append(rows, row)
		}
		clean := []string{"clean accuracy"}
		for _, tg := range t.Targets {
			clean = append(clean, fmt.Sprintf("%.1f%%", 100*tg.CleanAccuracy))
		}
		printColumns(stdout, append(rows, clean))
		fmt.Fprintf(stdout, "%.1f s\n", t.WallSeconds)
	}
	if f.save {
		return saveRun(ctx, z, plan, f, t, nil, nil, 0, t.WallSeconds, stdout)
	}
	return nil
}
