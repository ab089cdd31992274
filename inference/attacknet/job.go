package attacknet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
	"gibbon/internal/progress"
)

// Job is one training of an attack network from a models folder, as gibbon
// train-attack runs it: against classifiers of Dir's manifest (Targets) or ONNX files
// of the user's (TargetFiles, described by Contract), on a folder of images or on
// MNIST's training set; the network and its entry go to Dir.
type Job struct {
	Dir         string
	Targets     []string
	TargetFiles []string
	Contract    inference.InputContract // of TargetFiles
	// Images is a folder of training images (at most MaxImages; Holdout kept out to
	// check the network on, -1: 10% and at most 500); empty: MNIST's training set.
	Images             string
	MaxImages, Holdout int
	Name               string // default attack-net-<first target>
	Config             Config // Spec's shape, range and layout come from the targets
	Checkpoint         string // "": train.CheckpointPath("train-attack", ...)
	Fresh              bool
	Threads            int    // recorded in the provenance
	Command            string // recorded in the provenance
	Log                io.Writer
	Progress           *progress.Bar
}

// Trained is a finished Job: the network written and registered.
type Trained struct {
	Name, Dir, Path, SHA256 string
	Config                  Config
	Wall                    time.Duration
	Fooled                  []float64 // per head, share of the recent training batches fooled
	// HeldOut is each head's success on the held-out images (Images with Holdout).
	HeldOut  []*attack.Result
	HeldOutN int
	// MNIST says the targets take 28×28 gray images: Score can evaluate the network.
	MNIST bool
}

// Run trains the job's network, resuming from its checkpoint when there is one.
func (j Job) Run(ctx context.Context, rt *inference.Runtime) (*Trained, error) {
	if j.Log == nil {
		j.Log = io.Discard
	}
	ts, err := j.loadTargets(ctx, rt)
	defer ts.close()
	if err != nil {
		return nil, err
	}
	c := ts.contract
	rng := c.PixelRange()
	cfg := j.Config
	cfg.Targets = ts.names
	cfg.Spec.Channels, cfg.Spec.Height, cfg.Spec.Width, cfg.Spec.Layout = c.Channels, c.Height, c.Width, c.Layout
	cfg.Spec.Range = [2]float64{float64(rng[0]), float64(rng[1])}
	if _, err := cfg.Spec.Normalized(); err != nil {
		return nil, inference.Invalidf("%v", err)
	}
	data, check, dataDesc, err := j.trainingImages(ctx, c)
	if err != nil {
		return nil, err
	}
	if j.Name == "" {
		j.Name = "attack-net-" + ts.names[0]
	}
	if j.Checkpoint == "" {
		key, _ := json.Marshal(cfg)
		if j.Checkpoint, err = train.CheckpointPath("train-attack", j.Name, append(key, dataDesc...)); err != nil {
			return nil, err
		}
	}
	tr, err := j.train(ctx, rt, cfg, ts, data)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	out, err := j.save(rt, tr, cfg, ts, dataDesc)
	if err != nil || check == nil {
		return out, err
	}
	out.HeldOut, err = heldOut(ctx, rt, j.Name, tr, cfg, ts, check)
	out.HeldOutN = check.Len()
	return out, err
}

// targets are a job's classifiers, as attack models (mean/std folded into the graphs).
type targets struct {
	// models come from zoo (manifest targets, closed with it) or from the
	// user's files (closed one by one).
	zoo      *zoo.Zoo
	models   []*attack.ONNXModel
	names    []string
	contract inference.InputContract
	outDir   string
	// register are TargetFiles' entries, listed beside the network.
	register []inference.ModelEntry
}

func (t *targets) close() {
	if t.zoo != nil {
		t.zoo.Close()
		return
	}
	for _, m := range t.models {
		m.Close()
	}
}

func (j Job) loadTargets(ctx context.Context, rt *inference.Runtime) (*targets, error) {
	switch {
	case (len(j.Targets) == 0) == (len(j.TargetFiles) == 0):
		return &targets{}, inference.Invalidf("train an attack network against classifiers of a manifest or against files, not both or neither")
	case len(j.Targets) > 0:
		return j.manifestTargets(ctx, rt)
	}
	return j.fileTargets(ctx, rt)
}

func (j Job) manifestTargets(ctx context.Context, rt *inference.Runtime) (*targets, error) {
	ts := &targets{outDir: j.Dir}
	man, err := inference.ReadManifest(j.Dir)
	if err != nil {
		return ts, err
	}
	ts.zoo = zoo.Open(rt, inference.ModelSource{Name: j.Dir, FS: os.DirFS(j.Dir)})
	for i, n := range j.Targets {
		e, err := man.EntryOf(n, inference.TaskClassifier)
		if err != nil {
			return ts, inference.Invalidf("--targets: %v (in %s)", err, j.Dir)
		}
		if i == 0 {
			ts.contract = e.Input
		} else if !e.Input.SameTensor(ts.contract) {
			return ts, inference.Invalidf("--targets: %s takes %s, %s takes %s: one network needs one input form",
				ts.names[0], ts.contract.Describe(), n, e.Input.Describe())
		}
		m, err := ts.zoo.Get(ctx, n)
		if err != nil {
			return ts, err
		}
		ts.models, ts.names = append(ts.models, m.Net()), append(ts.names, n)
	}
	return ts, nil
}

// fileTargets loads the user's classifier files; each must lie inside the output
// folder (Dir, else the first file's), whose manifest will list it.
func (j Job) fileTargets(ctx context.Context, rt *inference.Runtime) (*targets, error) {
	c := j.Contract
	ts := &targets{contract: c, outDir: j.Dir}
	if ts.outDir == "" {
		ts.outDir = filepath.Dir(j.TargetFiles[0])
	}
	for _, path := range j.TargetFiles {
		data, err := os.ReadFile(path)
		if err != nil {
			return ts, err
		}
		m, err := onnx.Decode(data)
		if err != nil {
			return ts, fmt.Errorf("%s: %w", path, err)
		}
		name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		om, err := attack.NewONNXModel(ctx, rt, m, attack.ModelOptions{Name: name, Mean: c.Mean, Std: c.Std, Layout: c.Layout})
		if err != nil {
			return ts, err
		}
		ts.models, ts.names = append(ts.models, om), append(ts.names, name)
		if want := c.Shape(); !slices.Equal(om.InputShape()[1:], want[1:]) {
			return ts, inference.Invalidf("%s takes images %v; the input described says %v", path, om.InputShape(), want)
		}
		rel, err := filepath.Rel(ts.outDir, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			return ts, inference.Invalidf("%s is not inside %s, the folder whose manifest will list it beside the network", path, ts.outDir)
		}
		sum := sha256.Sum256(data)
		ts.register = append(ts.register, inference.ModelEntry{Name: name, File: filepath.ToSlash(rel), SHA256: hex.EncodeToString(sum[:]),
			Task: inference.TaskClassifier, Description: "Classifier registered by gibbon train-attack", Input: c, OutputsLogits: true})
	}
	return ts, nil
}

// trainingImages are the job's images on c's pixel range, the held-out ones (nil
// without), and a description for the provenance.
func (j Job) trainingImages(ctx context.Context, c inference.InputContract) (data, check *Images, desc string, err error) {
	if j.Images == "" {
		if !c.FitsMNIST() {
			return nil, nil, "", inference.Invalidf("the targets take %s: pass --images DIR (the MNIST default fits 28×28 gray models only)", c.Describe())
		}
		trainSet, _, err := mnist.Load(ctx)
		if err != nil {
			return nil, nil, "", err
		}
		x, _, err := c.MNISTTensor(trainSet, 0, trainSet.Len())
		if err != nil {
			return nil, nil, "", err
		}
		desc = mnist.Source() + "; training images only, labels unused (each target's prediction is the label)"
		return &Images{Data: x.Data, Shape: x.Shape[1:]}, nil, desc, nil
	}
	imgs, skipped, err := LoadImages(j.Images, c.Unnormalized(), j.MaxImages)
	for _, s := range skipped {
		fmt.Fprintf(j.Log, "skipping %s: %s\n", s.Path, s.Reason)
	}
	if err != nil {
		return nil, nil, "", err
	}
	hold := j.Holdout
	if hold < 0 {
		hold = min(imgs.Len()/10, 500)
	}
	if hold >= imgs.Len() {
		return nil, nil, "", inference.Invalidf("--holdout %d leaves none of the %d images to train on", hold, imgs.Len())
	}
	cut := (imgs.Len() - hold) * imgs.per()
	data = &Images{Data: imgs.Data[:cut], Shape: imgs.Shape}
	if hold > 0 {
		check = &Images{Data: imgs.Data[cut:], Shape: imgs.Shape}
	}
	desc = fmt.Sprintf("%d images from %s (unlabelled: each target's prediction is the label), %d held out", data.Len(), j.Images, hold)
	return data, check, desc, nil
}

// train runs the trainer to the end, from the checkpoint when there is one.
func (j Job) train(ctx context.Context, rt *inference.Runtime, cfg Config, ts *targets, data *Images) (*Trainer, error) {
	tts := make([]Target, len(ts.models))
	for i, t := range ts.models {
		tts[i] = Target{Name: ts.names[i], Model: t.Proto(), Classes: t.Classes()}
	}
	tr, err := New(rt, cfg, tts, data)
	if err != nil {
		return nil, err
	}
	if err := train.StartOrResume(tr, j.Checkpoint, j.Fresh, j.Name, j.Log); err != nil {
		tr.Close()
		return nil, err
	}
	fmt.Fprintf(j.Log, "training %s against %s: %d steps of %d images (%.2f epochs of %d), heads ε %v; %s; %d threads; checkpoint %s\n",
		j.Name, strings.Join(ts.names, ", "), cfg.Steps, cfg.BatchSize, tr.Epochs(), data.Len(), cfg.Spec.Eps, tr.Spec().Architecture(), j.Threads, j.Checkpoint)
	if err := tr.Run(ctx, RunOptions{Checkpoint: j.Checkpoint, Progress: j.Progress}); err != nil {
		tr.Close()
		return nil, train.Interrupted(ctx, err, tr.Step(), tr.TotalSteps(), j.Checkpoint)
	}
	return tr, nil
}

// save writes the network and its entry (and the TargetFiles' entries) to the output
// folder's manifest, then drops the checkpoint.
func (j Job) save(rt *inference.Runtime, tr *Trainer, cfg Config, ts *targets, dataDesc string) (*Trained, error) {
	model, err := tr.Model()
	if err != nil {
		return nil, err
	}
	out := &Trained{Name: j.Name, Dir: ts.outDir, Path: filepath.Join(ts.outDir, j.Name+".onnx"), Config: cfg,
		Wall: time.Duration(tr.WallSeconds() * float64(time.Second)), MNIST: ts.contract.FitsMNIST()}
	if out.SHA256, err = train.SaveModel(model, out.Path); err != nil {
		return nil, err
	}
	for k := range tr.Spec().Eps {
		out.Fooled = append(out.Fooled, tr.Recent.Fooled[k])
	}
	c, _ := json.Marshal(cfg)
	prov := &inference.Provenance{Command: j.Command, Seed: int64(cfg.Seed), Data: dataDesc, Epochs: tr.Epochs(),
		WallSeconds: float64(int(tr.WallSeconds()*10)) / 10, Date: time.Now().UTC().Format(time.RFC3339),
		Notes: fmt.Sprintf("ONNX Runtime %s CPU, %d intra-op thread(s); loss: sum over heads and targets of relu(z_y − logsumexp_{j≠y} z_j + κ), y the target's clean prediction, plus calm × each head's mean squared tanh input; Adam, cosine schedule; config %s", rt.Version(), j.Threads, c)}
	entry := Entry(j.Name, filepath.Base(out.Path), out.SHA256, cfg.Spec, ts.names, ts.contract, prov)
	if err := inference.UpdateManifest(ts.outDir, func(m *inference.Manifest) error {
		for _, e := range ts.register {
			if _, err := m.Entry(e.Name); err != nil {
				m.Put(e)
				fmt.Fprintf(j.Log, "registered classifier %s (%s) in %s\n", e.Name, e.File, filepath.Join(ts.outDir, inference.ManifestFile))
			}
		}
		m.Put(entry)
		return nil
	}); err != nil {
		return nil, err
	}
	_ = os.Remove(j.Checkpoint) // done: a later run with the same settings starts afresh
	return out, nil
}

// heldOut is each head's success on images kept out of training, judged against
// the targets' own clean predictions.
func heldOut(ctx context.Context, rt *inference.Runtime, name string, tr *Trainer, cfg Config, ts *targets, imgs *Images) ([]*attack.Result, error) {
	model, err := tr.Model()
	if err != nil {
		return nil, err
	}
	net, err := attack.NewNetwork(ctx, rt, model, attack.NetworkOptions{Name: name, Eps: cfg.Spec.Eps, Range: cfg.Spec.Range})
	if err != nil {
		return nil, err
	}
	defer net.Close()
	req := attack.Request{Images: &inference.Tensor{Shape: append([]int64{int64(imgs.Len())}, imgs.Shape...), Data: imgs.Data}}
	for i, m := range ts.models {
		req.Surrogates = append(req.Surrogates, attack.Model{Name: ts.names[i], Net: m})
	}
	return attack.RunNetworkHeads(ctx, net, attack.Config{Layout: ts.contract.Layout}, req)
}
