package server

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/inference"
	"gibbon/views"
)

const (
	// topK is how many classes each model shows.
	topK = 5
	// inputShowSide is about how large (CSS px) a model's input is shown; the
	// zoom is the integer factor that gets closest without smoothing.
	inputShowSide = 168
	// thumbnailSide bounds the thumbnail of the user's image.
	thumbnailSide = 240
)

func (s *Server) homePage(c echo.Context) views.HomePage {
	p := s.page(c, "Classify", "/")
	p.Scripts = append(p.Scripts, s.assets.URL("handoff.js")) // "Attack this image" carries an upload over
	return views.HomePage{
		Page: p,
		Limits: views.Limits{
			MaxUpload: formatBytes(s.cfg.MaxUploadBytes),
			MaxPixels: inference.FormatMegapixels(s.cfg.MaxPixels),
			Formats:   inference.ImageFormats,
			Accept:    "image/png,image/jpeg,image/gif,image/webp",
		},
		Samples:     s.samples.list,
		Classifiers: len(s.models.Classifiers()),
		Problems:    len(s.models.Problems()),
	}
}

func (s *Server) handleHome(c echo.Context) error {
	return s.render(c, http.StatusOK, views.Home(s.homePage(c)))
}

func (s *Server) redirectHome(c echo.Context) error {
	return c.Redirect(http.StatusSeeOther, "/")
}

// handleClassifyForm answers the no-JavaScript form: the home page again, with
// the results, or with the reason there are none.
func (s *Server) handleClassifyForm(c echo.Context) error {
	res, err := s.classify(c)
	page := s.homePage(c)
	status := http.StatusOK
	if err != nil {
		st, msg := statusFor(err)
		if st >= 500 && st != http.StatusServiceUnavailable {
			return err // a server fault: the error page, and the log
		}
		c.Set(handledErrKey, err)
		status, page.Error = st, msg
	}
	page.Result = res
	return s.render(c, status, views.Home(page))
}

// handleClassifyAPI is the same as JSON (views.Result), for app.js.
func (s *Server) handleClassifyAPI(c echo.Context) error {
	res, err := s.classify(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, res)
}

// input is what a classify request sent: an uploaded file, or a sample's bytes.
type input struct {
	data   []byte
	source string
	kind   string // upload, drawing or sample
	sample string
}

// readInput takes the "image" file of the (already parsed, size-limited) form, or
// else the "sample" field. A "source" field of "drawing" marks the pad's image.
func (s *Server) readInput(c echo.Context) (input, error) {
	req := c.Request()
	if req.MultipartForm != nil {
		if files := req.MultipartForm.File["image"]; len(files) > 0 && (files[0].Filename != "" || files[0].Size > 0) {
			fh := files[0]
			if fh.Size > s.cfg.MaxUploadBytes {
				return input{}, s.errUploadTooLarge()
			}
			f, err := fh.Open()
			if err != nil {
				return input{}, fmt.Errorf("open upload: %w", err)
			}
			defer f.Close()
			data, err := io.ReadAll(io.LimitReader(f, s.cfg.MaxUploadBytes+1))
			if err != nil {
				return input{}, fmt.Errorf("read upload: %w", err)
			}
			if int64(len(data)) > s.cfg.MaxUploadBytes {
				return input{}, s.errUploadTooLarge()
			}
			in := input{data: data, source: "upload “" + truncate(fh.Filename, 60) + "”", kind: "upload"}
			if req.FormValue("source") == "drawing" {
				in.source, in.kind = "your drawing", "drawing"
			}
			return in, nil
		}
	}
	if name := req.FormValue("sample"); name != "" {
		sm, ok := s.samples.get(name)
		if !ok {
			return input{}, userError{http.StatusNotFound, fmt.Sprintf("There is no sample called %q.", truncate(name, 60))}
		}
		return input{data: sm.data, source: "sample " + sm.Label, kind: "sample", sample: name}, nil
	}
	return input{}, errNoInput
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// classify decodes the input once and runs every classifier on it.
func (s *Server) classify(c echo.Context) (*views.Result, error) {
	in, err := s.readInput(c)
	if err != nil {
		return nil, err
	}
	ctx := c.Request().Context()
	pic, hdr, err := s.loadPicture(ctx, in.data)
	if err != nil {
		return nil, err
	}
	res := &views.Result{Source: in.source, Detail: fmt.Sprintf("%s, %d×%d px", hdr.Format, hdr.Width, hdr.Height),
		Kind: in.kind, Sample: in.sample}
	if err := take(ctx, s.slots); err != nil {
		return nil, err
	}
	defer func() { <-s.slots }()
	if res.Original, err = pngDataURL(pic.Thumbnail(thumbnailSide)); err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}

	classifiers := s.models.Classifiers()
	for _, m := range classifiers {
		if m.Input.Resize == inference.ResizeMNIST {
			res.MNIST = mnistHint(pic.MNISTDistance())
			break
		}
	}

	s.classifying.Add(1)
	defer s.classifying.Add(-1)
	type prepared struct {
		pre *inference.Preprocessed
		err error
		ms  float64
		url string
	}
	cache := map[string]*prepared{} // models with the same contract share preprocessing
	var imageErrs []error
	for _, m := range classifiers {
		key := fmt.Sprintf("%+v", m.Input)
		p, ok := cache[key]
		if !ok {
			start := time.Now()
			// The zoo's classifiers take the pixel range: mean/std are in their graphs.
			pre, err := pic.Preprocess(m.Input.Unnormalized())
			if err == nil && len(pre.Steps) > 0 {
				if m.Input.Normalized() {
					pre.Steps[len(pre.Steps)-1] += "; the model's graph takes them to " + m.Input.ValuesText()
				}
			}
			p = &prepared{pre: pre, err: err, ms: millis(time.Since(start))}
			if err == nil {
				p.url, p.err = pngDataURL(pre.Display)
			}
			cache[key] = p
		}
		mr := views.ModelResult{Name: m.Name, Architecture: m.Architecture, Robust: m.Robust,
			InputWidth: m.Input.Width, InputHeight: m.Input.Height, PreprocessMS: p.ms,
			Zoom: max(1, (inputShowSide+m.Input.Width/2)/max(m.Input.Width, m.Input.Height))}
		if p.err != nil {
			_, mr.Error = statusFor(p.err)
			imageErrs = append(imageErrs, p.err)
			res.Models = append(res.Models, mr)
			continue
		}
		mr.Input, mr.Steps = p.url, p.pre.Steps
		start := time.Now()
		probs, err := m.Probabilities(ctx, p.pre.Tensor)
		mr.InferenceMS = millis(time.Since(start))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.log.Error("model failed", "model", m.Name, "err", err)
			mr.Error = "This model failed to run on this image: " + err.Error()
			res.Models = append(res.Models, mr)
			continue
		}
		for _, pr := range m.TopK(probs[0], topK) {
			mr.Top = append(mr.Top, views.Score{Label: pr.Label, Index: pr.Index, Prob: float64(pr.Prob)})
		}
		res.Models = append(res.Models, mr)
	}
	// When the image itself is the problem for every model (blank, say), it is the
	// answer to the request, not a note on each card.
	if len(classifiers) > 0 && len(imageErrs) == len(classifiers) {
		return nil, imageErrs[0]
	}
	return res, nil
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// mnistHint says what an input's distance from MNIST's digits means for the
// models trained on them: a teachable moment about inputs a model never saw.
func mnistHint(d inference.MNISTDistance) *views.MNISTHint {
	h := &views.MNISTHint{Distance: d.Distance, Border: d.Border, Tones: d.Tones, Unlike: d.Unlike(),
		Explain: fmt.Sprintf("The distance compares the image with MNIST's 10,000 test digits, light strokes on an even black background: "+
			"the share of its border that is not background (digits: under %.0f %%) or of its pixels in between background and ink "+
			"(digits: under %.0f %%), whichever is further over its limit; 1 or less is like a test digit.",
			100*inference.BorderLimit, 100*inference.TonesLimit)}
	shares := fmt.Sprintf("%.0f %% of its border is not background and %.0f %% of its pixels are in-between tones", 100*d.Border, 100*d.Tones)
	if h.Unlike {
		h.Verdict = fmt.Sprintf("The MNIST models only know handwritten digits, and this image is not like one: distance %.1f from MNIST's digits (%s). "+
			"They still answer with a digit, often a confident one; read their answers as guesses about a picture they were never shown.", d.Distance, shares)
	} else {
		h.Verdict = fmt.Sprintf("Like the handwritten digits the MNIST models were trained on: distance %.2f from MNIST's digits (%s).", d.Distance, shares)
	}
	return h
}
