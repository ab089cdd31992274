package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"sync"

	"github.com/labstack/echo/v4"
	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"

	"gibbon/gallery"
	"gibbon/inference/engine"
	"gibbon/views"
)

// The Open Graph preview card of a permalink: clean | adversarial | perturbation,
// enlarged without smoothing, labelled, with the attacked model's flip
// ("7 → 3, mnist-cnn-small") underneath. Social sites ask for at least 1200×630.

const (
	cardWidth, cardHeight = 1200, 630
	// cardPanel is the side of each picture's square; cardTop where they start.
	cardPanel, cardTop = 340, 120
	// cardLayout names this drawing in the card's ETag: bump it when the card
	// changes, so caches that kept the old one fetch the new.
	cardLayout = "card-2"
)

var (
	cardInk   = color.NRGBA{0x1f, 0x29, 0x37, 0xff}
	cardMuted = color.NRGBA{0x5b, 0x66, 0x75, 0xff}
	cardBad   = color.NRGBA{0xb2, 0x18, 0x2b, 0xff}
	cardPaper = color.NRGBA{0xf7, 0xf8, 0xfa, 0xff}
	cardLine  = color.NRGBA{0xc9, 0xd1, 0xdb, 0xff}
)

// cardFonts are the Go fonts (embedded in golang.org/x/image), parsed once. A
// parsed font is read-only and shared; faces are made per card (they hold buffers).
var cardFonts = sync.OnceValues(func() ([2]*sfnt.Font, error) {
	var out [2]*sfnt.Font
	for i, ttf := range [][]byte{goregular.TTF, gobold.TTF} {
		f, err := opentype.Parse(ttf)
		if err != nil {
			return out, fmt.Errorf("the card's font: %w", err)
		}
		out[i] = f
	}
	return out, nil
})

// cardText is what a card says, taken from the entry.
type cardText struct {
	Heading            string // "PGD · ε 8/255 · 40 steps"
	Clean, Adversarial string // "7 (98.1 %)"
	MapCaption         string // "perturbation, ±8/255": where its colours are full
	Flip               string // "7 → 3, mnist-cnn-small"
	Flipped            bool
}

// cardETag names a card by what it is drawn from; the entry never changes while
// it exists, so the card is cached for good like the stored images.
func cardETag(e *gallery.Entry) string {
	sum := sha256.Sum256([]byte(cardLayout + "|" + e.Slug + "|" + e.OriginalSHA + "|" + e.AdversarialSHA))
	return `"` + cardLayout + "-" + hex.EncodeToString(sum[:8]) + `"`
}

// handleCard is /g/:slug/card.png.
func (s *Server) handleCard(c echo.Context) error {
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	return s.servePicture(c, cardETag(e), func() ([]byte, error) {
		p, err := s.loadPair(c.Request().Context(), e)
		if err != nil {
			return nil, err
		}
		img, err := drawCard(p, cardTextOf(e))
		if err != nil {
			return nil, err
		}
		return engine.EncodePNG(img)
	})
}

// drawCard draws the card (on RGBA: image/draw and x/image/draw have fast paths
// for it, several times faster than NRGBA's generic ones).
func drawCard(p *storedPair, t cardText) (*image.RGBA, error) {
	fonts, err := cardFonts()
	if err != nil {
		return nil, err
	}
	face := func(i int, size float64) (font.Face, error) {
		return opentype.NewFace(fonts[i], &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	}
	title, err := face(1, 40)
	if err != nil {
		return nil, err
	}
	label, err := face(1, 28)
	if err != nil {
		return nil, err
	}
	body, err := face(0, 26)
	if err != nil {
		return nil, err
	}
	flip, err := face(1, 46)
	if err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, cardWidth, cardHeight))
	draw.Draw(img, img.Bounds(), image.NewUniform(cardPaper), image.Point{}, draw.Src)

	writeText(img, title, cardInk, 45, 70, cardWidth-90, "Gibbon · "+t.Heading, false)
	gap := (cardWidth - 3*cardPanel) / 4
	panels := []struct {
		caption, note string
		pic           image.Image
	}{
		{"clean", t.Clean, p.grid.Image(p.clean)},
		{"adversarial", t.Adversarial, p.grid.Image(p.adv)},
		{t.MapCaption, "red: brighter, blue: darker", p.perturbationMap(1)},
	}
	for i, pn := range panels {
		x := gap + i*(cardPanel+gap)
		writeText(img, label, cardMuted, x+cardPanel/2, cardTop-14, cardPanel, pn.caption, true)
		box := image.Rect(x, cardTop, x+cardPanel, cardTop+cardPanel)
		draw.Draw(img, box.Inset(-2), image.NewUniform(cardLine), image.Point{}, draw.Src)
		draw.Draw(img, box, image.NewUniform(color.Black), image.Point{}, draw.Src)
		xdraw.NearestNeighbor.Scale(img, fitSquare(box, pn.pic.Bounds()), pn.pic, pn.pic.Bounds(), draw.Src, nil)
		writeText(img, body, cardInk, x+cardPanel/2, cardTop+cardPanel+36, cardPanel+gap-8, pn.note, true)
	}
	ink := cardInk
	if t.Flipped {
		ink = cardBad
	}
	writeText(img, flip, ink, cardWidth/2, cardHeight-40, cardWidth-90, t.Flip, true)
	return img, nil
}

// fitSquare is where a picture goes in box: enlarged by a whole factor when it is
// small (every pixel a sharp square), else shrunk to fit; centred.
func fitSquare(box, pic image.Rectangle) image.Rectangle {
	w, h := pic.Dx(), pic.Dy()
	side := box.Dx()
	if z := side / max(w, h); z >= 1 {
		w, h = w*z, h*z
	} else if w >= h {
		w, h = side, max(1, h*side/w)
	} else {
		w, h = max(1, w*side/h), side
	}
	x := box.Min.X + (side-w)/2
	y := box.Min.Y + (box.Dy()-h)/2
	return image.Rect(x, y, x+w, y+h)
}

// writeText draws s with its baseline at y, starting at x (or centred on x),
// shortened with "…" to fit maxW pixels.
func writeText(dst draw.Image, face font.Face, ink color.Color, x, y, maxW int, s string, centre bool) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(ink), Face: face}
	s = fitText(d, s, maxW)
	w := d.MeasureString(s).Round()
	if centre {
		x -= w / 2
	}
	d.Dot = fixed.P(x, y)
	d.DrawString(s)
}

// fitText shortens s, rune by rune, until it fits maxW pixels.
func fitText(d font.Drawer, s string, maxW int) string {
	if d.MeasureString(s).Round() <= maxW {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && d.MeasureString(string(r)+"…").Round() > maxW {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// cardTextOf is what e's card says: the attack and ε, the attacked model's top
// class on each image, and its flip.
func cardTextOf(e *gallery.Entry) cardText {
	params, _ := engine.ParamsOf(e)
	t := cardText{Heading: attackLabel(e, params) + " · ε " + gallery.FormatEps(e.Eps, e.EpsUnit),
		MapCaption: fmt.Sprintf("perturbation, ±%d/255", epsLevels(e))}
	pred, name := attackedVerdict(e)
	if pred == nil || len(pred.Original) == 0 || len(pred.Adversarial) == 0 {
		t.Flip = e.Title
		if t.Flip == "" {
			t.Flip = describe(string(e.Kind), e.Attack, modelNames(e, true))
		}
		return t
	}
	top := func(p gallery.Prediction) string { return p.Label + " (" + views.Percent(p.Prob) + ")" }
	t.Clean, t.Adversarial = top(pred.Original[0]), top(pred.Adversarial[0])
	t.Flip = pred.Original[0].Label + " → " + pred.Adversarial[0].Label + ", " + name
	t.Flipped = pred.Original[0].Index != pred.Adversarial[0].Index
	return t
}
