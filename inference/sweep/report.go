package sweep

import (
	"encoding/csv"
	"io"
	"strconv"
)

// CSV column sets, one per report kind (the tests check them). "scoring" labels a
// transform defence's row non-adaptive or adaptive (empty for a model alone).
var (
	DatasetCSVHeader  = []string{"eps", "eps_255", "defence", "model", "transform", "correct", "n", "robust_accuracy", "attack_success", "scoring"}
	ImageCSVHeader    = []string{"eps", "eps_255", "linf_255", "defence", "top1", "top1_prob", "true_prob", "wrong_class", "wrong_prob", "flipped", "scoring"}
	CompeteCSVHeader  = []string{"attack", "defence", "misclassified", "n", "rate", "attack_score", "attack_rank", "defence_score", "defence_rank", "scoring"}
	TransferCSVHeader = []string{"source", "target", "eps", "eps_255", "fooled", "clean_correct", "wrong", "n", "success_rate"}
)

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func writeCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	if err := cw.WriteAll(rows); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSV writes one row per ε and defence.
func (r *DatasetResult) WriteCSV(w io.Writer) error {
	var rows [][]string
	for k, e := range r.Eps {
		for _, c := range r.Defences {
			rows = append(rows, []string{num(e), num(r.Eps255[k]), c.Name, c.Model, c.Transform, strconv.Itoa(c.Correct[k]),
				strconv.Itoa(r.N), num(c.Accuracy[k]), num(round6(1 - c.Accuracy[k])), c.Mode})
		}
	}
	return writeCSV(w, DatasetCSVHeader, rows)
}

// WriteCSV writes one row per ε and defence.
func (r *ImageResult) WriteCSV(w io.Writer) error {
	var rows [][]string
	for _, p := range r.Points {
		for d, dp := range p.Defences {
			rows = append(rows, []string{num(p.Eps), num(p.Eps255), num(p.Linf255), r.Defences[d].Name, strconv.Itoa(dp.Top1),
				num(dp.Top1Prob), num(dp.TrueProb), strconv.Itoa(dp.WrongClass), num(dp.WrongProb), strconv.FormatBool(dp.Flipped), r.Defences[d].Mode})
		}
	}
	return writeCSV(w, ImageCSVHeader, rows)
}

// WriteCSV writes one row per attack and defence, with both entrants' scores and ranks.
func (m *Matrix) WriteCSV(w io.Writer) error {
	var rows [][]string
	for a, at := range m.Attacks {
		for d, def := range m.Defences {
			mis := m.Misclassified[a][d]
			rows = append(rows, []string{at.Name, def.Name, strconv.Itoa(mis), strconv.Itoa(m.N), num(round6(float64(mis) / float64(max(1, m.N)))),
				strconv.Itoa(at.Score), strconv.Itoa(at.Rank), strconv.Itoa(def.Score), strconv.Itoa(def.Rank), def.Mode})
		}
	}
	return writeCSV(w, CompeteCSVHeader, rows)
}

// WriteCSV writes one row per source and target.
func (t *TransferMatrix) WriteCSV(w io.Writer) error {
	var rows [][]string
	for s, src := range t.Sources {
		for d, tg := range t.Targets {
			rows = append(rows, []string{src.Name, tg.Name, num(t.Eps), num(t.Eps255), strconv.Itoa(t.Fooled[s][d]),
				strconv.Itoa(tg.CleanCorrect), strconv.Itoa(t.Wrong[s][d]), strconv.Itoa(t.N), num(t.Rate[s][d])})
		}
	}
	return writeCSV(w, TransferCSVHeader, rows)
}
