package server

import (
	"cmp"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"gibbon/views"
)

// samplePattern is how sample files are named: digit-<label>-<k>.png.
var samplePattern = regexp.MustCompile(`^digit-([A-Za-z0-9_]+)-([0-9]{1,6})\.png$`)

// maxSampleBytes skips anything too large to be a sample digit.
const maxSampleBytes = 1 << 20

type sample struct {
	views.Sample
	k    int
	data []byte
}

// sampleSet is every sample image, read once at start.
type sampleSet struct {
	list   []views.Sample
	byName map[string]*sample
}

// loadSamples reads the sample folders; the first folder holding a name wins.
// Files that are not named like samples are ignored.
func loadSamples(dirs []fs.FS) (*sampleSet, error) {
	set := &sampleSet{byName: map[string]*sample{}}
	var all []*sample
	for _, dir := range dirs {
		if dir == nil {
			continue
		}
		entries, err := fs.ReadDir(dir, ".")
		if err != nil {
			return nil, fmt.Errorf("sample digits: %w", err)
		}
		for _, e := range entries {
			m := samplePattern.FindStringSubmatch(e.Name())
			if m == nil || e.IsDir() || set.byName[e.Name()] != nil {
				continue
			}
			info, err := e.Info()
			if err != nil || info.Size() > maxSampleBytes {
				continue
			}
			data, err := fs.ReadFile(dir, e.Name())
			if err != nil {
				return nil, fmt.Errorf("sample digits: %w", err)
			}
			k, _ := strconv.Atoi(m[2])
			sm := &sample{Sample: views.Sample{Name: e.Name(), Label: m[1], URL: "/samples/" + e.Name()}, k: k, data: data}
			set.byName[e.Name()] = sm
			all = append(all, sm)
		}
	}
	slices.SortFunc(all, func(a, b *sample) int {
		return cmp.Or(cmp.Compare(a.Label, b.Label), cmp.Compare(a.k, b.k))
	})
	for _, sm := range all {
		set.list = append(set.list, sm.Sample)
	}
	return set, nil
}

func (s *sampleSet) get(name string) (*sample, bool) {
	sm, ok := s.byName[name]
	return sm, ok
}

func (s *Server) handleSample(c echo.Context) error {
	sm, ok := s.samples.get(c.Param("name"))
	if !ok {
		return echo.ErrNotFound
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, "image/png", sm.data)
}
