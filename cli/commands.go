package cli

import (
	"context"
	"io"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists every subcommand, in the order `gibbon help` shows them.
// Each command lives in its own file, named for it.
func commands() []command {
	return []command{
		{"serve", "serve the web app on localhost:8080 with the built-in models (and --models DIR)", cmdServe},
		{"worker", "run the explorer's attacks for `gibbon serve --nats URL` web nodes: gibbon worker --nats URL [--models DIR] [--ep cuda] [--concurrency N]", cmdWorker},
		{"runtime", "ONNX Runtime: install the library, info (version, providers), placement of a model's nodes", cmdRuntime},
		{"grad", "write a classifier's gradient graph: gibbon grad MODEL.onnx -o OUT.onnx [--params a,b] [--loss ce|seed]", cmdGrad},
		{"attack", "attack a model: one image (-o out.png) or --dataset mnist-test, with success on every model (transfer)", cmdAttack},
		{"rerun", "replay a saved run from its recorded plan and check it gives the stored result bit for bit: gibbon rerun SLUG|entry.json", cmdRerun},
		{"gallery", "back up, restore or check the gallery: export DIR, import DIR, check", cmdGallery},
		{"models", "ImageNet classifiers: list [--available], pull NAME (download, verify, prepare, register)", cmdModels},
		{"train", "train a built-in MNIST model: gibbon train [--list] NAME (writes models/NAME.onnx and its manifest entry)", cmdTrain},
		{"eval", "clean and PGD-40 (or --attack autoattack) accuracy of a model on the MNIST test set, recorded in the manifest: gibbon eval NAME", cmdEval},
		{"train-attack", "train an attack network (one pass, one adversarial image per ε head) against classifiers: --targets A,B or --target my.onnx --images DIR", cmdTrainAttack},
		{"eval-attack", "score an attack network on the MNIST test set beside noise, PGD-10 and MI-FGSM, with its speed: gibbon eval-attack NAME", cmdEvalAttack},
		{"sweep", "robust accuracy against ε: --dataset mnist-test --n 1000 --attack pgd --eps 0:0.4:0.025, or one IMAGE (the ε that flips each defence)", cmdSweep},
		{"compete", "attack × defence matrix scored as in the NIPS'17 competition (ε drawn per batch), with ranks", cmdCompete},
		{"transfer", "transfer matrix: an attack crafted on each source, its success on each target, at one ε", cmdTransfer},
		{"bench", "benchmarks: gibbon bench grad (gradient graph vs forward pass on MNIST, MobileNetV2, ResNet-18, DeiT shapes)", cmdBench},
	}
}
