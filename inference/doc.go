// Package inference owns Gibbon's use of ONNX Runtime and what every model-running
// package shares:
//
//   - the runtime: the one process-wide ONNX Runtime environment (runtime.go), its
//     library (found, version-checked, installed by inference/ortinstall), the
//     execution providers and where each node of a graph runs (provider*.go);
//   - sessions (session.go) and tensors (tensor.go);
//   - the manifest (manifest.go): the one reader and writer of manifest.json, which
//     lists models with their checksums, input contracts, labels and provenance;
//   - the model registry (registry*.go): every model of the built-in and user
//     sources loaded once, checked against its manifest entry, and classification;
//   - input contracts (contract.go): how an image becomes a model's tensor, when two
//     models take the same tensor, and how that is said in words;
//   - preprocessing (preprocess*.go): decoding uploads and fitting them to a contract;
//   - ε values (eps.go): budgets on a pixel range, read from "8/255" or "0.3" and
//     written with their /255 steps;
//   - ErrInvalid (errors.go), which marks a mistake in what was asked.
//
// Attacks, defences, attack networks, sweeps and training live in the packages
// below this one and take their models and tensors from it.
package inference
