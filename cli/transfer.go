package cli

import (
	"context"
	"fmt"
	"io"

	"gibbon/inference"
	"gibbon/inference/sweep"
)

// cmdTransfer crafts adversarial images on each source and judges them on every target.
func cmdTransfer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("transfer", stderr,
		"Usage: gibbon transfer [--sources A,B,...] [--targets C,...] [--attack pgd] [--eps 0.2] [--n 500] [flags]",
		"The transfer matrix: the attack run on each source (a classifier, or net:NAME, an attack network)",
		"and its images shown to each target; a cell is the share of the images the target got right that",
		"it then gets wrong.")
	var f runFlags
	f.register(fs, sweep.KindTransfer)
	sources := fs.String("sources", "", "classifiers (and net:NAME attack networks) to craft on (default: every one taking the first classifier's input)")
	fs.StringVar(&f.defences, "targets", "", "MODEL or MODEL+KIND[:PARAM], comma-separated (default: every classifier taking that input)")
	method := fs.String("attack", "pgd", "the attack run on each classifier source")
	if err := f.parseOnlyFlags(fs, args); err != nil {
		return err
	}
	s := f.settings(fs, sweep.KindTransfer)
	s.Attack, s.Models = *method, splitList(*sources)
	plan, closeModels, err := openPlan(ctx, f, s, stderr)
	if err != nil {
		return err
	}
	defer closeModels()
	return f.execute(ctx, plan, "transfer", func(w io.Writer, r any) { printTransfer(w, r.(*sweep.TransferMatrix), plan) }, stdout, stderr)
}

// printTransfer is the transfer matrix as a table.
func printTransfer(w io.Writer, t *sweep.TransferMatrix, plan *sweep.Plan) {
	fmt.Fprintf(w, "%s transfer at ε %s on %d %s images; seed %d\n", plan.Settings.Attack, inference.EpsOn(plan.Eps[0], plan.Range).String(), t.N, t.Dataset, t.Seed)
	fmt.Fprintln(w, "cells: share of the images the target classifies correctly that it misclassifies after the source's attack")
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
	(&table{rows: append(rows, clean)}).write(w)
	fmt.Fprintf(w, "%.1f s\n", t.WallSeconds)
}
