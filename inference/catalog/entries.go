package catalog

import "gibbon/inference"

// Where the ONNX Model Zoo's files live since the zoo moved off Git LFS: each model in
// its own Hugging Face repository of the onnxmodelzoo organisation (named after the
// file), and the older layout mirrored under legacy_models. Every URL is a mirror of
// the same bytes; the SHA-256 decides.
const (
	zooRepo   = "https://huggingface.co/onnxmodelzoo/"
	zooLegacy = "https://huggingface.co/onnxmodelzoo/legacy_models/resolve/main/"
)

// zooURLs: the per-model repository, then the legacy mirror of validated/<path>/<stem>.onnx.
func zooURLs(stem, legacyDir string) []string {
	return []string{
		zooRepo + stem + "/resolve/main/" + stem + ".onnx",
		zooLegacy + "validated/vision/classification/" + legacyDir + "/" + stem + ".onnx",
	}
}

// exportURLs: the zoo's timm / torch-hub exports (Computer_Vision/<stem>_<source>/ in the legacy mirror).
func exportURLs(stem, source string) []string {
	urls := []string{zooRepo + stem + "/resolve/main/" + stem + ".onnx"}
	if source != "" {
		urls = append(urls, zooLegacy+"Computer_Vision/"+stem+"_"+source+"/"+stem+".onnx")
	}
	return urls
}

const hubManifest = "onnx/models ONNX_HUB_MANIFEST.json (model_sha = the Git LFS oid, model_bytes)"

// zooHub names an export's file in its own zoo repository on the hub; with no stored
// hash, Pull pins it by the hub's LFS metadata at the commit main resolves to.
func zooHub(stem string) *HubFile {
	return &HubFile{Repo: "onnxmodelzoo/" + stem, Path: stem + ".onnx"}
}

const pinnedByHub = "the hub at pull time: the LFS SHA-256 and size of the commit the revision resolves to, recorded in the manifest"

// Input contracts, as each publisher documents its preprocessing.
var (
	// torchvision / MXNet Gluon / the zoo's imagenet_preprocess: shorter side 256, centre 224.
	imagenetBilinear = inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB",
		Range: [2]float64{0, 1}, Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225},
		Resize: "crop", CropPct: 0.875, Interp: "bilinear"}
	// timm's default config for these architectures: same statistics, bicubic.
	imagenetBicubic = func() inference.InputContract {
		c := imagenetBilinear
		c.Mean, c.Std = []float64{0.485, 0.456, 0.406}, []float64{0.229, 0.224, 0.225}
		c.Interp = "bicubic"
		return c
	}()
	// TensorFlow Inception-family ports (timm): 299 px, [-1, 1].
	inception299 = func(cropPct float64) inference.InputContract {
		return inference.InputContract{Layout: "NCHW", Channels: 3, Height: 299, Width: 299, Color: "RGB",
			Range: [2]float64{0, 1}, Mean: []float64{0.5, 0.5, 0.5}, Std: []float64{0.5, 0.5, 0.5},
			Resize: "crop", CropPct: cropPct, Interp: "bicubic"}
	}
)

// Default is Gibbon's built-in catalog. Pinned entries carry the checksum and size of
// the exact file; hub entries without one are pinned by the hub when pulled (the
// commit, SHA-256 and size are recorded, and later pulls fetch exactly those bytes).
//
// The NIPS'17 competition's setting: adv_inception_v3 and ens_adv_inception_resnet_v2
// are the defences, inception_v3 and a ResNet the surrogates attacks are crafted on
// (Role), so `gibbon compete --model SURROGATES --defences DEFENCES` replays it.
func Default() Catalog {
	c := builtin()
	for i := range c { // entries share contract values above: give each its own slices
		c[i].Input.Mean = append([]float64(nil), c[i].Input.Mean...)
		c[i].Input.Std = append([]float64(nil), c[i].Input.Std...)
	}
	return c
}

func builtin() Catalog {
	return Catalog{
		{
			Name: "mobilenetv2-12", Architecture: "MobileNetV2 1.0",
			Description: "MobileNetV2 1.0 from the ONNX Model Zoo (validated), torchvision-style preprocessing, logits out",
			URLs:        zooURLs("mobilenetv2-12", "mobilenet/model"),
			SHA256:      "c0c3f76d93fa3fd6580652a45618618a220fced18babf65774ed169de0432ad5", Size: 13964571, Opset: 12,
			PinSource: hubManifest, License: "Apache-2.0",
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "resnet50-v1-12", Architecture: "ResNet-50 v1",
			Description: "ResNet-50 v1 (MXNet Gluon) from the ONNX Model Zoo (validated), top-1 74.97% as published, logits out; NIPS'17 surrogate (the ResNet attacks are crafted on)",
			URLs:        zooURLs("resnet50-v1-12", "resnet/model"),
			SHA256:      "3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526", Size: 102576593, Opset: 12,
			PinSource: hubManifest, License: "Apache-2.0", Role: inference.RoleSurrogate,
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "resnet18-v1-7", Architecture: "ResNet-18 v1",
			Description: "ResNet-18 v1 (MXNet Gluon) from the ONNX Model Zoo (validated), opset 7, logits out",
			URLs:        zooURLs("resnet18-v1-7", "resnet/model"),
			SHA256:      "4e8f8653e7a2222b3904cc3fe8e304cd8b339ce1d05fd24688162f86fb6df52c", Size: 46820737, Opset: 7,
			PinSource: hubManifest, License: "Apache-2.0",
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "squeezenet1.1-7", Architecture: "SqueezeNet 1.1",
			Description: "SqueezeNet 1.1 (MXNet Gluon) from the ONNX Model Zoo (validated), opset 7, fixed batch 1, logits out",
			URLs:        zooURLs("squeezenet1.1-7", "squeezenet/model"),
			SHA256:      "1eeff551a67ae8d565ca33b572fc4b66e3ef357b0eb2863bb9ff47a918cc4088", Size: 4956208, Opset: 7,
			PinSource: hubManifest, License: "Apache-2.0",
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "shufflenet-v2-12", Architecture: "ShuffleNet V2 1.0",
			Description: "ShuffleNet V2 (PyTorch) from the ONNX Model Zoo (validated), fixed batch 1, logits out",
			URLs:        zooURLs("shufflenet-v2-12", "shufflenet/model"),
			SHA256:      "ea69821b4dd374ae2f33f9710dd1229ac263d0ee5b5a46ca3521f6483e1ba035", Size: 9218556, Opset: 12,
			PinSource: hubManifest, License: "Apache-2.0",
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "efficientnet-lite4-11", Architecture: "EfficientNet-Lite4",
			Description: "EfficientNet-Lite4 (TensorFlow) from the ONNX Model Zoo (validated): NHWC input in [-1, 1] ((x-127)/128), ends in Softmax",
			URLs:        zooURLs("efficientnet-lite4-11", "efficientnet-lite4/model"),
			SHA256:      "d111689907c06eea7c82e4833ddef758da6453b9d4cf60b7e99ca05c7cbd9c12", Size: 51946641, Opset: 11,
			PinSource: hubManifest, License: "Apache-2.0",
			Input: inference.InputContract{Layout: "NHWC", Channels: 3, Height: 224, Width: 224, Color: "RGB",
				Range: [2]float64{0, 255}, Mean: []float64{127, 127, 127}, Std: []float64{128, 128, 128},
				Resize: "crop", CropPct: 0.875, Interp: "bilinear"},
			OutputsLogits: false, Classes: 1000,
		},
		{
			Name: "googlenet-12", Architecture: "GoogLeNet (Inception v1)",
			Description: "BVLC GoogLeNet (Caffe) from the ONNX Model Zoo (validated): BGR 0-255 minus the channel means, 224x224 stretched, ends in Softmax",
			URLs:        zooURLs("googlenet-12", "inception_and_googlenet/googlenet/model"),
			SHA256:      "c99c507058eaf41de8723408fdda7db8325cb57f0a89f2ee07a716d6e963e14e", Size: 28021836, Opset: 12,
			PinSource: hubManifest, License: "BSD-3-Clause",
			Input: inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "BGR",
				Range: [2]float64{0, 255}, Mean: []float64{103.939, 116.779, 123.68}, Std: []float64{1, 1, 1},
				Resize: "stretch", Interp: "bilinear"},
			OutputsLogits: false, Classes: 1000,
		},
		{
			Name: "vgg16-12", Architecture: "VGG-16",
			Description: "VGG-16 (MXNet Gluon) from the ONNX Model Zoo (validated), 553 MB, fixed batch 1, logits out",
			URLs:        zooURLs("vgg16-12", "vgg/model"),
			SHA256:      "722c42f53ca03a5480296bf8f9c85a151de3eed9ec982d7d2302ff6e2900c67b", Size: 553437752, Opset: 12,
			PinSource: hubManifest, License: "Apache-2.0",
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "mobilenetv2_100-opset17", Architecture: "MobileNetV2 1.0 (timm)",
			Description: "timm mobilenetv2_100 exported at opset 17 by the ONNX Model Zoo, input x fixed at batch 1, logits out",
			URLs:        exportURLs("mobilenetv2_100_Opset17", "timm"),
			SHA256:      "fbfdd0ff7c3404264a44644a8d134e5a488e97a926beffb64c774cc534f90681", Size: 13989578, Opset: 17,
			PinSource: "issue 10's research (not found again in a stored source; a wrong pin fails safe)", License: "Apache-2.0",
			Input: imagenetBicubic, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "squeezenet1_1-opset17", Architecture: "SqueezeNet 1.1 (torchvision)",
			Description: "torchvision squeezenet1_1 exported at opset 17 by the ONNX Model Zoo, input x fixed at batch 1, logits out",
			URLs:        exportURLs("squeezenet1_1_Opset17", "torch_hub"),
			SHA256:      "fbb553444cab298bcac72cf623694e277dfe11d78662108f91ff46b6acb2cc5f", Size: 4958202, Opset: 17,
			PinSource: "issue 10's research (not found again in a stored source; a wrong pin fails safe)", License: "BSD-3-Clause",
			Input: imagenetBilinear, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "convit_tiny-opset17", Architecture: "ConViT-Ti (vision transformer, DeiT training)",
			Description: "timm convit_tiny, a DeiT-trained vision transformer with gated positional self-attention, exported at opset 17 by the ONNX Model Zoo, logits out",
			URLs:        exportURLs("convit_tiny_Opset17", "timm"),
			SHA256:      "14ec83a7a80ad5f1dfced81b8816bc514f75284ee8e14ab8fd5e949c0750244b", Opset: 17,
			PinSource: "the file page of onnxmodelzoo/convit_tiny_Opset17 (LFS SHA-256; size shown only as 23.4 MB)", License: "Apache-2.0",
			Input: imagenetBicubic, OutputsLogits: true, Classes: 1000,
		},

		// Pinned by the hub at pull time: no stored source gave a checksum for these files.
		{
			Name: "deit_tiny_patch16_224-opset16", Architecture: "DeiT-Ti/16 (vision transformer)",
			Description: "timm deit_tiny_patch16_224 exported at opset 16 by the ONNX Model Zoo, input x fixed at batch 1, logits out",
			Hub:         zooHub("deit_tiny_patch16_224_Opset16"), Opset: 16,
			PinSource: pinnedByHub, License: "Apache-2.0",
			Input: imagenetBicubic, OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "inception_v3-opset17", Architecture: "Inception v3",
			Description: "NIPS'17 surrogate: Inception v3 via timm (the competition's baseline attacks were crafted on it), exported at opset 17 by the ONNX Model Zoo, logits out",
			Hub:         zooHub("inception_v3_Opset17"), Opset: 17,
			PinSource: pinnedByHub, License: "Apache-2.0", Role: inference.RoleSurrogate,
			Input: inception299(0.875), OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "adv_inception_v3-opset17", Architecture: "Inception v3, adversarially trained",
			Description: "NIPS'17 defence: Inception v3 adversarially trained (Kurakin et al.), TensorFlow weights via timm, exported at opset 17 by the ONNX Model Zoo",
			Hub:         zooHub("adv_inception_v3_Opset17"), Opset: 17,
			PinSource: pinnedByHub, License: "Apache-2.0", Robust: true, Role: inference.RoleDefence,
			Input: inception299(0.875), OutputsLogits: true, Classes: 1000,
		},
		{
			Name: "ens_adv_inception_resnet_v2-opset17", Architecture: "Inception-ResNet v2, ensemble adversarial training",
			Description: "NIPS'17 defence: Inception-ResNet v2 with ensemble adversarial training (Tramèr et al.), TensorFlow weights via timm, exported at opset 17 by the ONNX Model Zoo",
			Hub:         zooHub("ens_adv_inception_resnet_v2_Opset17"), Opset: 17,
			PinSource: pinnedByHub, License: "Apache-2.0", Robust: true, Role: inference.RoleDefence,
			Input: inception299(0.8975), OutputsLogits: true, Classes: 1000,
		},
	}
}
