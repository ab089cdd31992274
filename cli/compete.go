package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"gibbon/inference"
	"gibbon/inference/sweep"
)

// cmdCompete scores attacks against defences as the NIPS 2017 competition did.
func cmdCompete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compete", stderr,
		"Usage: gibbon compete [--attacks A,B,...] [--defences D,...] [--model M] [--n 500] [flags]",
		"Every untargeted attack against every defence, as in the NIPS 2017 competition: batches of images,",
		"each with a budget drawn from --eps; an attack scores the misclassifications it causes summed over",
		"defences, a defence its correct answers summed over attacks.")
	var f runFlags
	f.register(fs, sweep.KindCompete)
	attacks := fs.String("attacks", "", "methods, or net:NAME for attack networks, comma-separated (default: noise, fgsm, pgd, mi-fgsm and every attack network)")
	model := fs.String("model", "", "the model(s) gradient and black-box attacks attack (default: the first classifier)")
	fs.StringVar(&f.defences, "defences", "", "MODEL or MODEL+KIND[:PARAM], comma-separated (default: every classifier, and every transform in front of the attacked model)")
	if err := f.parseOnlyFlags(fs, args); err != nil {
		return err
	}
	s := f.settings(fs, sweep.KindCompete)
	s.Attacks, s.Models = splitList(*attacks), splitList(*model)
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
	bar := newBar(stderr, "compete", len(labels))
	m, err := sweep.Compete(ctx, sweep.CompeteSpec{Dataset: s.Dataset, Attacks: plan.Attacks, Defences: plan.Defences, Images: x, Labels: labels,
		Range: plan.Range, EpsSet: plan.Eps, Batch: s.Batch, Seed: s.Seed}, func(m *sweep.Matrix) error { bar.Update(m.N, ""); return nil })
	bar.End()
	if err != nil {
		return err
	}
	return f.report(ctx, z, plan, m, m.WriteCSV, func(w io.Writer) { printMatrix(w, m, plan) }, m.WallSeconds, stdout)
}

func printMatrix(w io.Writer, m *sweep.Matrix, plan *sweep.Plan) {
	eps := ""
	for i, e := range plan.Eps {
		if i > 0 {
			eps += ", "
		}
		eps += inference.EpsOn(e, plan.Range).String()
	}
	fmt.Fprintf(w, "%d attacks × %d defences on %d %s images in batches of %d, each batch's ε drawn from {%s}; seed %d\n",
		len(m.Attacks), len(m.Defences), m.N, m.Dataset, m.Batch, eps, m.Seed)
	fmt.Fprintln(w, "cells: images misclassified by the defence (row: attack); an attack's score sums its row, a defence's")
	fmt.Fprintln(w, "score sums its correct answers down its column")
	rows := [][]string{{"attack \\ defence"}}
	for _, d := range m.Defences {
		rows[0] = append(rows[0], d.Name)
	}
	rows[0] = append(rows[0], "score", "rank", "s/img")
	for a, at := range m.Attacks {
		row := []string{at.Name}
		for d := range m.Defences {
			row = append(row, strconv.Itoa(m.Misclassified[a][d]))
		}
		row = append(row, strconv.Itoa(at.Score), "#"+strconv.Itoa(at.Rank), fmt.Sprintf("%.4f", at.WallSeconds/float64(max(m.N, 1))))
		rows = append(rows, row)
	}
	score, rank, clean := []string{"defence score"}, []string{"defence rank"}, []string{"clean correct"}
	for _, d := range m.Defences {
		score = append(score, strconv.Itoa(d.Score))
		rank = append(rank, "#"+strconv.Itoa(d.Rank))
		clean = append(clean, strconv.Itoa(d.CleanCorrect))
	}
	rows = append(rows, score, rank, clean)
	(&table{rows: rows}).write(w)
	fmt.Fprintf(w, "%.1f s\n", m.WallSeconds)
}
