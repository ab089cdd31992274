package inference

import (
	"slices"
	"testing"

	"gibbon/inference/onnx"
)

func TestParseEP(t *testing.T) {
	for in, want := range map[string]string{"": EPCPU, "cpu": EPCPU, " WebGPU ": EPWebGPU, "cuda": EPCUDA, "auto": EPAuto} {
		got, err := ParseEP(in)
		if err != nil || got != want {
			t.Errorf("ParseEP(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"gpu", "tensorrt", "cpu,cuda"} {
		if _, err := ParseEP(bad); err == nil {
			t.Errorf("ParseEP(%q) accepted", bad)
		}
	}
}

func TestResolveEPOrder(t *testing.T) {
	t.Setenv("GIBBON_EP", "webgpu")
	if ep, _ := ResolveEP("cuda"); ep != EPCUDA {
		t.Errorf("flag should win over GIBBON_EP, got %q", ep)
	}
	if ep, _ := ResolveEP(""); ep != EPWebGPU {
		t.Errorf("GIBBON_EP ignored, got %q", ep)
	}
	t.Setenv("GIBBON_EP", "")
	if ep, _ := ResolveEP(""); ep != EPCPU {
		t.Errorf("default should be cpu, got %q", ep)
	}
	t.Setenv("GIBBON_EP", "vulkan")
	if _, err := ResolveEP(""); err == nil {
		t.Error("bad GIBBON_EP accepted")
	}
}

func TestProviderOrder(t *testing.T) {
	all := LibraryInfo{Providers: []string{"CUDAExecutionProvider", "WebGpuExecutionProvider", "CPUExecutionProvider"}, CUDAProviderLib: "/lib/libonnxruntime_providers_cuda.so"}
	npm := LibraryInfo{Providers: all.Providers} // lists CUDA, ships without its provider library
	cpuOnly := LibraryInfo{Providers: []string{"CPUExecutionProvider"}}
	tests := []struct {
		name         string
		ep           string
		lib          LibraryInfo
		software     bool
		try, missing []string
	}{
		{"cpu", EPCPU, all, false, []string{"cpu"}, nil},
		{"auto all", EPAuto, all, false, []string{"cuda", "webgpu", "cpu"}, nil},
		{"auto on a software device skips webgpu", EPAuto, all, true, []string{"cuda", "cpu"}, nil},
		{"auto cpu-only library", EPAuto, cpuOnly, false, []string{"cpu"}, nil},
		{"explicit cuda", EPCUDA, all, true, []string{"cuda", "cpu"}, nil},
		{"explicit webgpu on software device", EPWebGPU, all, true, []string{"webgpu", "cpu"}, nil},
		{"explicit webgpu not offered", EPWebGPU, cpuOnly, false, []string{"cpu"}, []string{"webgpu"}},
		{"unknown provider list", EPCUDA, LibraryInfo{}, false, []string{"cuda", "cpu"}, nil},
		{"auto, CUDA provider library missing", EPAuto, npm, false, []string{"webgpu", "cpu"}, nil},
		{"explicit cuda, provider library missing", EPCUDA, npm, false, []string{"cpu"}, []string{"cuda"}},
	}
	for _, tc := range tests {
		try, missing := providerOrder(tc.ep, tc.lib, tc.software)
		if !slices.Equal(try, tc.try) || !slices.Equal(missing, tc.missing) {
			t.Errorf("%s: got try=%v missing=%v, want %v %v", tc.name, try, missing, tc.try, tc.missing)
		}
	}
}

func TestSoftwareGPUOnlyFromVulkanEnv(t *testing.T) {
	t.Setenv("VK_DRIVER_FILES", "")
	t.Setenv("VK_ICD_FILENAMES", "/usr/share/vulkan/icd.d/lvp_icd.json")
	if !softwareGPUOnly() {
		t.Error("lavapipe alone should count as software")
	}
	t.Setenv("VK_ICD_FILENAMES", "/usr/share/vulkan/icd.d/lvp_icd.json:/usr/share/vulkan/icd.d/nvidia_icd.json")
	if softwareGPUOnly() {
		t.Error("an NVIDIA ICD beside lavapipe is a GPU")
	}
}

func TestVersionMatches(t *testing.T) {
	for v, want := range map[string]bool{ORTVersion: true, ORTVersion + "-dev": true, ORTVersion + "0": false, "1.23.2": false, "": false} {
		if versionMatches(v) != want {
			t.Errorf("versionMatches(%q) = %v", v, !want)
		}
	}
}

func TestParseProfile(t *testing.T) {
	profile := `[
{"cat":"Session","name":"model_loading_array","args":{}},
{"cat":"Node","name":"conv_fence_before","args":{"op_name":"Conv"}},
{"cat":"Node","name":"conv_kernel_time","args":{"op_name":"Conv","provider":"WebGpuExecutionProvider","thread_scheduling_stats":{"main_thread":{"block_size":[1]}}}},
{"cat":"Node","name":"Memcpy_token_kernel_time","args":{"op_name":"MemcpyToHost","provider":"WebGpuExecutionProvider"}},
{"cat":"Node","name":"scatter_kernel_time","args":{"op_name":"ScatterElements","provider":"CPUExecutionProvider"}},
{"cat":"Node","name":"conv_kernel_time","args":{"op_name":"Conv","provider":"WebGpuExecutionProvider"}}
]`
	nodes, err := parseProfile([]byte(profile))
	if err != nil {
		t.Fatal(err)
	}
	p := &Placement{Provider: EPWebGPU, Nodes: nodes}
	if len(nodes) != 3 {
		t.Fatalf("nodes = %+v, want conv, memcpy, scatter once each", nodes)
	}
	off := p.OffProvider()
	if len(off) != 1 || off[0].Name != "scatter" || off[0].OpType != "ScatterElements" {
		t.Errorf("off provider = %+v", off)
	}
	if p.Copies() != 1 {
		t.Errorf("copies = %d", p.Copies())
	}
	if c := p.Counts(); c[0] != (ProviderCount{"WebGpuExecutionProvider", 2}) {
		t.Errorf("counts = %+v", c)
	}
	for _, bad := range []string{"", "{}", "[]", `[{"cat":"Session","name":"x"}]`} {
		if _, err := parseProfile([]byte(bad)); err == nil {
			t.Errorf("profile %q accepted", bad)
		}
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("  load failed\n  details here\r\nmore  "); got != "load failed | details here | more" {
		t.Errorf("oneLine = %q", got)
	}
}

func TestWebGPUForceCPUNamesMaxPoolWithIndices(t *testing.T) {
	b := onnx.NewBuilder("pools")
	x := b.Input("x", 1, 1, 4, 4)
	_ = b.OpN("MaxPool", []string{x}, 2, onnx.AttrInts("kernel_shape", 2, 2))
	plain := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 2, 2))
	b.Output("y", plain, 1, 1, 3, 3)
	m := b.Model()
	m.Graph.Node[0].Name = nil // an unnamed node gets a name so it can be forced
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	out, names, err := webgpuForceCPU(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "gibbon_cpu_maxpool_0" {
		t.Fatalf("forced nodes = %v, want the MaxPool with Indices only", names)
	}
	back, err := onnx.Decode(out)
	if err != nil || back.Graph.Node[0].GetName() != names[0] {
		t.Fatalf("re-encoded model lacks the new name: %v", err)
	}
	if _, _, err := webgpuForceCPU([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}
