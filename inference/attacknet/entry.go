package attacknet

import (
	"fmt"
	"strings"

	"gibbon/inference"
)

// Architecture describes the generator in words, for the manifest.
func (s Spec) Architecture() string {
	s, err := s.Normalized()
	if err != nil {
		return "invalid spec: " + err.Error()
	}
	ch := s.levelChannels()
	var down []string
	for _, c := range ch[1:] {
		down = append(down, fmt.Sprint(c))
	}
	if s.Shuffle == 2 {
		return fmt.Sprintf("U-Net generator on the image folded 2×2 into channels (space-to-depth, %d×%d×%d): conv3x3 (%d) - %d× conv3x3/2 (%s) - conv3x3 (%d) - %d× [convT3x3/2, concat skip, conv3x3] - conv3x3 to 4 × %d head(s) × %d channel(s) unfolded to full size (depth-to-space), ReLU; "+
			"head k: adv = x + eps_k·tanh(h_k) inside the eps ball and the pixel range; %.2fM multiply-adds per image",
			4*s.Channels, s.top(s.Height), s.top(s.Width), ch[0], s.Levels, strings.Join(down, ", "), ch[s.Levels], s.Levels, len(s.Eps), s.Channels, float64(s.MACs())/1e6)
	}
	return fmt.Sprintf("U-Net generator: conv3x3 (%d) - %d× conv3x3/2 (%s) - conv3x3 (%d) - %d× [convT3x3/2, concat skip, conv3x3 (1x1 at full size)] - conv3x3 to %d head(s) × %d channel(s), ReLU; "+
		"head k: adv = x + eps_k·tanh(h_k) inside the eps ball and the pixel range; %.1fM multiply-adds per image",
		ch[0], s.Levels, strings.Join(down, ", "), ch[s.Levels], s.Levels, len(s.Eps), s.Channels, float64(s.MACs())/1e6)
}

// Entry is the manifest entry of a trained generator. Its input contract is the
// targets' without mean/std and under the generator's input name: the network takes
// and returns pixel-range images.
func Entry(name, file, sha string, spec Spec, targets []string, contract inference.InputContract, prov *inference.Provenance) inference.ModelEntry {
	contract = contract.Unnormalized()
	contract.Name = Input // the generator's own input, whatever the targets call theirs
	s, _ := spec.Normalized()
	var heads []string
	for _, e := range s.Eps {
		heads = append(heads, fmt.Sprint(e))
	}
	return inference.ModelEntry{
		Name: name, File: file, SHA256: sha, Task: inference.TaskAttackNetwork,
		Description: fmt.Sprintf("Attack network: one forward pass gives an adversarial image per L∞ budget (eps %s on [%g,%g]); trained against %s. Output %q is [N, %d, ...the input's shape], heads in the order of attack.eps.",
			strings.Join(heads, ", "), s.Range[0], s.Range[1], strings.Join(targets, ", "), Output, len(s.Eps)),
		Architecture: s.Architecture(),
		Input:        contract,
		Training:     prov,
		Attack:       &inference.AttackNetInfo{Eps: append([]float64(nil), s.Eps...), Targets: append([]string(nil), targets...)},
	}
}
