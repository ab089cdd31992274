package train

import (
	"fmt"
	"math"
)

// Optimizer kinds.
const (
	SGD  = "sgd"
	Adam = "adam"
)

// OptimizerConfig chooses and tunes the update rule.
type OptimizerConfig struct {
	Kind     string  `json:"kind"`               // sgd or adam
	Momentum float64 `json:"momentum,omitempty"` // sgd: heavy-ball momentum (0.9 typical)
	Nesterov bool    `json:"nesterov,omitempty"` // sgd: Nesterov momentum
	Beta1    float64 `json:"beta1,omitempty"`    // adam, default 0.9
	Beta2    float64 `json:"beta2,omitempty"`    // adam, default 0.999
	Epsilon  float64 `json:"epsilon,omitempty"`  // adam, default 1e-8
	// WeightDecay applies to weights (not biases): added to the gradient for SGD (L2),
	// decoupled from the adaptive step for Adam (AdamW, Loshchilov & Hutter).
	WeightDecay float64 `json:"weight_decay,omitempty"`
}

func (c OptimizerConfig) validate() error {
	switch c.Kind {
	case SGD:
		if c.Momentum < 0 || c.Momentum >= 1 {
			return fmt.Errorf("sgd momentum %g must be in [0,1)", c.Momentum)
		}
	case Adam:
		for _, b := range []float64{c.Beta1, c.Beta2} {
			if b < 0 || b >= 1 {
				return fmt.Errorf("adam beta %g must be in [0,1)", b)
			}
		}
	default:
		return fmt.Errorf("unknown optimizer %q (sgd or adam)", c.Kind)
	}
	if c.WeightDecay < 0 {
		return fmt.Errorf("weight decay %g is negative", c.WeightDecay)
	}
	return nil
}

// optimizer holds per-parameter state: momentum buffers (SGD) or both Adam moments.
type optimizer struct {
	cfg  OptimizerConfig
	t    int64       // updates applied
	m, v [][]float32 // aligned with the params
}

func newOptimizer(cfg OptimizerConfig, params []*Param) (*optimizer, error) {
	if cfg.Kind == Adam {
		if cfg.Beta1 == 0 {
			cfg.Beta1 = 0.9
		}
		if cfg.Beta2 == 0 {
			cfg.Beta2 = 0.999
		}
		if cfg.Epsilon == 0 {
			cfg.Epsilon = 1e-8
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	o := &optimizer{cfg: cfg, m: make([][]float32, len(params))}
	if cfg.Kind == Adam {
		o.v = make([][]float32, len(params))
	}
	for i, p := range params {
		o.m[i] = make([]float32, len(p.Data))
		if o.v != nil {
			o.v[i] = make([]float32, len(p.Data))
		}
	}
	return o, nil
}

// step applies one update; grads[i] is the mean-loss gradient of params[i].
func (o *optimizer) step(params []*Param, grads [][]float32, lr float64) {
	o.t++
	switch o.cfg.Kind {
	case SGD:
		mu, wd := float32(o.cfg.Momentum), float32(o.cfg.WeightDecay)
		lr32 := float32(lr)
		for i, p := range params {
			m, g := o.m[i], grads[i]
			decay := p.decays()
			for j := range p.Data {
				gj := g[j]
				if decay {
					gj += wd * p.Data[j]
				}
				m[j] = mu*m[j] + gj
				if o.cfg.Nesterov {
					gj += mu * m[j]
				} else {
					gj = m[j]
				}
				p.Data[j] -= lr32 * gj
			}
		}
	case Adam:
		b1, b2 := o.cfg.Beta1, o.cfg.Beta2
		c1 := 1 - math.Pow(b1, float64(o.t))
		c2 := 1 - math.Pow(b2, float64(o.t))
		stepSize := float32(lr / c1)
		sqrtC2 := float32(math.Sqrt(c2))
		eps := float32(o.cfg.Epsilon)
		b1f, b2f := float32(b1), float32(b2)
		shrink := float32(1 - lr*o.cfg.WeightDecay)
		for i, p := range params {
			m, v, g := o.m[i], o.v[i], grads[i]
			decay := p.decays() && o.cfg.WeightDecay > 0
			for j := range p.Data {
				gj := g[j]
				m[j] = b1f*m[j] + (1-b1f)*gj
				v[j] = b2f*v[j] + (1-b2f)*gj*gj
				w := p.Data[j]
				if decay {
					w *= shrink
				}
				p.Data[j] = w - stepSize*m[j]/(float32(math.Sqrt(float64(v[j])))/sqrtC2+eps)
			}
		}
	}
}
