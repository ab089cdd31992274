package server

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"gibbon/inference"
	"gibbon/inference/zoo"
	"gibbon/views"
)

// handleModels shows every model: architecture, input contract, measured
// accuracy and provenance, and the models that failed to load with the reason.
func (s *Server) handleModels(c echo.Context) error {
	page := views.ModelsPage{Page: s.page(c, "Models", "/models"), Defences: transformDefences(), Catalog: s.catalogSection()}
	for _, m := range s.models.All() {
		tables, rest := s.netTables(m)
		row, rest := robustness(m, rest)
		info := modelInfo(m, rest)
		info.Runs = s.runsOn(m)
		info.NetTables = tables
		info.Robustness = row
		if row != nil {
			page.Robustness = append(page.Robustness, *row)
		}
		page.Models = append(page.Models, info)
	}
	for _, p := range s.models.Problems() {
		page.Problems = append(page.Problems, p.Error())
	}
	return s.render(c, http.StatusOK, views.Models(page))
}

// modelInfo describes a model; metrics are the measurements to list (those the
// page shows as a table are left out).
func modelInfo(m *zoo.Model, metrics map[string]float64) views.ModelInfo {
	in := m.Input
	info := views.ModelInfo{
		Name: m.Name, Task: m.Task, Source: m.Source, Description: m.Description,
		Architecture: m.Architecture, Robust: m.Robust,
	}
	values := in.ValuesText()
	interp := in.Interp
	if interp == "" {
		interp = "bilinear"
	}
	info.Input = []views.Fact{
		{Label: "Tensor", Value: fmt.Sprintf("%s %s, input %q", shape(in.Shape()), strings.ToUpper(in.Layout), m.InputName())},
		{Label: "Colour", Value: in.Color},
		{Label: "Pixel values", Value: values},
		{Label: "Resize", Value: resizeText(in)},
		{Label: "Interpolation", Value: interp},
	}
	if m.Task == inference.TaskClassifier {
		scores := fmt.Sprintf("%d logits, softmax applied by Gibbon", len(m.Labels))
		if !m.OutputsLogits {
			scores = fmt.Sprintf("%d probabilities (the graph ends in a softmax)", len(m.Labels))
		}
		info.Output = []views.Fact{
			{Label: "Scores", Value: scores},
			{Label: "Labels", Value: labelsText(m.Labels)},
			{Label: "Output", Value: m.OutputName(), Code: true},
		}
	}
	if a := m.Attack; a != nil {
		info.Output = append(info.Output,
			views.Fact{Label: "ε heads", Value: fmt.Sprintf("%v (on the pixel range %s)", a.Eps, values)},
			views.Fact{Label: "Trained against", Value: strings.Join(a.Targets, ", ")})
	}
	keys := make([]string, 0, len(metrics))
	for k := range metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := metrics[k]
		text := fmt.Sprintf("%g", v)
		if strings.Contains(k, "accuracy") && v >= 0 && v <= 1 {
			text = fmt.Sprintf("%.2f %%", v*100)
		}
		info.Metrics = append(info.Metrics, views.Fact{Label: strings.ReplaceAll(k, "_", " "), Value: text})
	}
	if t := m.Training; t != nil {
		info.Training = append(info.Training, views.Fact{Label: "Command", Value: t.Command, Code: true})
		add := func(label, value string) {
			if value != "" {
				info.Training = append(info.Training, views.Fact{Label: label, Value: value})
			}
		}
		add("Data", t.Data)
		add("Seed", fmt.Sprint(t.Seed))
		if t.Epochs > 0 {
			add("Epochs", fmt.Sprintf("%g", t.Epochs))
		}
		if t.WallSeconds > 0 {
			text := fmt.Sprintf("%.0f s", t.WallSeconds)
			if t.WallSeconds >= 120 {
				text += fmt.Sprintf(" (%.1f min)", t.WallSeconds/60)
			}
			add("Training time", text)
		}
		add("Date", t.Date)
		add("Notes", t.Notes)
	}
	info.File = []views.Fact{
		{Label: "File", Value: m.File, Code: true},
		{Label: "Size", Value: formatBytes(m.Bytes)},
		{Label: "sha256", Value: strings.ToLower(m.SHA256), Code: true},
		{Label: "From", Value: m.Source},
	}
	return info
}

// runsOn says where a model's sessions run: its forward pass (classifying,
// defending, attacking) and, once an attack built it, its gradient graph.
func (s *Server) runsOn(m *zoo.Model) []views.Fact {
	if net := m.Network(); net != nil {
		return []views.Fact{{Label: "Attack network", Value: providerLabel(net.Provider())}}
	}
	fwd, grad := m.Net().Providers()
	out := []views.Fact{{Label: "Forward", Value: providerLabel(fwd)}}
	if grad == "" {
		return append(out, views.Fact{Label: "Gradient graph", Value: "not built yet: the first gradient attack on this model builds it"})
	}
	return append(out, views.Fact{Label: "Gradient graph", Value: providerLabel(grad)})
}

// providerLabel is how pages name a provider.
func providerLabel(ep string) string {
	switch ep {
	case inference.EPCPU:
		return "CPU"
	case inference.EPCUDA:
		return "CUDA"
	case inference.EPWebGPU:
		return "WebGPU"
	case "":
		return "not started"
	}
	return ep
}

func resizeText(in inference.InputContract) string {
	switch strings.ToLower(in.Resize) {
	case inference.ResizeMNIST:
		return fmt.Sprintf("MNIST-style: dark-on-light inverted, digit fitted into a %d×%d box keeping its aspect, centre of mass at the centre of %d×%d",
			(in.Width*20+14)/28, (in.Height*20+14)/28, in.Width, in.Height)
	case inference.ResizeCrop:
		pct := in.CropPct
		if pct == 0 {
			pct = 1
		}
		if in.Width == in.Height { // as inference.Preprocess (and timm, torchvision) size it
			return fmt.Sprintf("shorter side scaled to %d keeping the aspect, centre %d×%d cropped (crop_pct %g)",
				int(math.Floor(float64(in.Width)/pct+1e-9)), in.Width, in.Height, pct)
		}
		return fmt.Sprintf("scaled to cover %.0f×%.0f keeping the aspect, centre %d×%d cropped (crop_pct %g)",
			float64(in.Width)/pct, float64(in.Height)/pct, in.Width, in.Height, pct)
	}
	return fmt.Sprintf("stretched to %d×%d (aspect not kept)", in.Width, in.Height)
}

func labelsText(labels []string) string {
	if len(labels) <= 12 {
		return strings.Join(labels, ", ")
	}
	return strings.Join(labels[:10], ", ") + fmt.Sprintf(", … (%d in all)", len(labels))
}

func shape(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "×")
}
