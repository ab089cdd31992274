package server

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gibbon/gallery"
	"gibbon/views"
)

// The permalink's charts are drawn here as SVG geometry (the page works without
// script, and the CSP forbids inline script and style): the loss over the recorded
// steps, and each defence's confidence — its top-1 probability and the true
// class's — over the same steps.

// chartBox is every chart's size and plot area, in SVG units.
var chartBox = views.LineChart{Width: 380, Height: 210, Left: 64, Top: 14, Right: 366, Bottom: 170}

// lossChart is the loss per recorded step; nil under two steps.
func lossChart(st []gallery.Step) *views.LineChart {
	if len(st) < 2 {
		return nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	xs := make([]float64, len(st))
	ys := make([]float64, len(st))
	for i, s := range st {
		lo, hi = min(lo, s.Loss), max(hi, s.Loss)
		xs[i], ys[i] = float64(s.Step), s.Loss
	}
	if hi == lo {
		lo, hi = lo-1, hi+1
	}
	c := chartBox
	c.Key, c.Title, c.XLabel, c.YLabel = "loss", "Loss", "step", "loss"
	c.Label = fmt.Sprintf("Loss over %d recorded steps, from %s to %s", len(st), num4(lo), num4(hi))
	c.XTicks = stepTicks(c, xs)
	for _, v := range []float64{lo, (lo + hi) / 2, hi} {
		c.YTicks = append(c.YTicks, views.ChartTick{Pos: yAt(c, v, lo, hi), Text: num4(v)})
	}
	c.Lines = []views.ChartLine{{Label: "loss", Class: "series-loss", Points: points(c, xs, ys, lo, hi)}}
	return &c
}

// confidenceCharts draw, per defence, its top-1 probability and the true class's
// probability over the recorded steps (percent). A defence with fewer than two
// recorded guesses gets no chart.
func confidenceCharts(st []gallery.Step, order []string) []views.LineChart {
	type series struct{ xs, top, truth []float64 }
	by := map[string]*series{}
	for _, s := range st {
		for _, t := range s.Top1 {
			sr := by[t.Name()]
			if sr == nil {
				sr = &series{}
				by[t.Name()] = sr
			}
			sr.xs = append(sr.xs, float64(s.Step))
			sr.top = append(sr.top, 100*t.Prob)
			tp := math.NaN()
			if t.TrueProb != nil {
				tp = 100 * *t.TrueProb
			}
			sr.truth = append(sr.truth, tp)
		}
	}
	var out []views.LineChart
	for i, name := range order {
		sr := by[name]
		if sr == nil || len(sr.xs) < 2 {
			continue
		}
		c := chartBox
		c.Key, c.Title, c.XLabel, c.YLabel = "confidence-"+strconv.Itoa(i), name, "step", "probability (%)"
		c.Label = fmt.Sprintf("%s: top-1 and true-class probability over %d recorded steps", name, len(sr.xs))
		c.XTicks = stepTicks(c, sr.xs)
		for _, v := range []float64{0, 50, 100} {
			c.YTicks = append(c.YTicks, views.ChartTick{Pos: yAt(c, v, 0, 100), Text: strconv.Itoa(int(v))})
		}
		c.Lines = append(c.Lines, views.ChartLine{Label: "top-1 class", Class: "series-top", Points: points(c, sr.xs, sr.top, 0, 100)})
		if p := points(c, sr.xs, sr.truth, 0, 100); p != "" {
			c.Lines = append(c.Lines, views.ChartLine{Label: "true class", Class: "series-true", Points: p})
		}
		out = append(out, c)
	}
	return out
}

// stepTicks marks the first, middle and last step.
func stepTicks(c views.LineChart, xs []float64) []views.ChartTick {
	first, last := xs[0], xs[len(xs)-1]
	var out []views.ChartTick
	for _, v := range []float64{first, math.Round((first + last) / 2), last} {
		if len(out) > 0 && v == first {
			continue
		}
		out = append(out, views.ChartTick{Pos: xAt(c, v, first, last), Text: strconv.Itoa(int(v))})
	}
	return out
}

func xAt(c views.LineChart, v, lo, hi float64) float64 {
	if hi == lo {
		return float64(c.Left)
	}
	return float64(c.Left) + float64(c.Right-c.Left)*(v-lo)/(hi-lo)
}

func yAt(c views.LineChart, v, lo, hi float64) float64 {
	return float64(c.Bottom) - float64(c.Bottom-c.Top)*(v-lo)/(hi-lo)
}

// points is a polyline's points attribute; NaN values (unrecorded) are left out,
// and so is a line with fewer than two points.
func points(c views.LineChart, xs, ys []float64, lo, hi float64) string {
	var b strings.Builder
	n := 0
	for i := range xs {
		if math.IsNaN(ys[i]) || math.IsInf(ys[i], 0) {
			continue
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", xAt(c, xs[i], xs[0], xs[len(xs)-1]), yAt(c, ys[i], lo, hi))
		n++
	}
	if n < 2 {
		return ""
	}
	return b.String()
}

// num4 writes a value with four significant digits.
func num4(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
