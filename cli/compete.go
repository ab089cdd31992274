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
		"defences, a defence its correct answers summed over attacks. --adaptive also scores every transform",
		"defence attacked through its transform.")
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
	plan, closeModels, err := openPlan(ctx, f, s, stderr)
	if err != nil {
		return err
	}
	defer closeModels()
	return f.execute(ctx, plan, "compete", func(w io.Writer, r any) { printMatrix(w, r.(*sweep.Matrix), plan) }, stdout, stderr)
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
	if plan.Settings.Adaptive {
		fmt.Fprintln(w, "(adaptive) columns: each attack through the defence's transform, scored beside the competition (not in attack")
		fmt.Fprintln(w, "scores) and ranked in its defence's place; attack networks cannot adapt and are judged on their own images")
	}
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
	printScoring(w, len(m.Defences), func(d int) (string, sweep.Scoring) { return m.Defences[d].Name, m.Defences[d].Scoring })
	fmt.Fprintf(w, "%.1f s\n", m.WallSeconds)
}
