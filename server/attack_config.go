package server

import (
	"fmt"
	"runtime"
	"time"
)

// AttackConfig bounds the live attack explorer.
type AttackConfig struct {
	// MaxRuns is how many attacks run at once; MaxQueue how many more may wait in
	// line (with their position shown; negative: none may wait). Beyond that a run
	// is refused as busy.
	MaxRuns  int
	MaxQueue int
	// MaxSteps caps the steps (or queries) of one run; RunTimeout its wall time.
	MaxSteps   int
	RunTimeout time.Duration
	// MaxDefences caps how many defences one run watches.
	MaxDefences int
	// MaxSocketsPerClient caps the explorer websockets one client (IP address) may
	// hold open at once: each is a page that can queue a run.
	MaxSocketsPerClient int
	// MaxPace caps the slow-motion delay per step.
	MaxPace time.Duration
	// PingPeriod is how often the server pings; a client that answers nothing
	// (no pong, no message) for PongWait is disconnected, as is one that takes
	// WriteWait to accept a message.
	PingPeriod time.Duration
	PongWait   time.Duration
	WriteWait  time.Duration
}

// DefaultAttackConfig is what `gibbon serve` uses.
func DefaultAttackConfig() AttackConfig {
	return AttackConfig{
		MaxRuns:             max(1, runtime.GOMAXPROCS(0)/2),
		MaxQueue:            8,
		MaxSteps:            1000,
		RunTimeout:          2 * time.Minute,
		MaxDefences:         12,
		MaxSocketsPerClient: 4,
		MaxPace:             time.Second,
		PingPeriod:          20 * time.Second,
		PongWait:            45 * time.Second,
		WriteWait:           15 * time.Second,
	}
}

// Check reports limits that cannot work, for `gibbon serve` to refuse at start
// (zero values are not errors here: withDefaults fills them).
func (c AttackConfig) Check() error {
	switch {
	case c.MaxRuns < 0:
		return fmt.Errorf("the explorer's concurrent runs must be at least 1, not %d", c.MaxRuns)
	case c.MaxSteps < 0:
		return fmt.Errorf("the explorer's step cap must be at least 1, not %d", c.MaxSteps)
	case c.RunTimeout < 0:
		return fmt.Errorf("the explorer's time limit per run cannot be negative (%s)", c.RunTimeout)
	case c.MaxSocketsPerClient < 0:
		return fmt.Errorf("the explorer's connections per client must be at least 1, not %d", c.MaxSocketsPerClient)
	}
	return nil
}

// withDefaults fills zero fields from DefaultAttackConfig.
func (c AttackConfig) withDefaults() AttackConfig {
	d := DefaultAttackConfig()
	if c.MaxRuns <= 0 {
		c.MaxRuns = d.MaxRuns
	}
	if c.MaxQueue < 0 {
		c.MaxQueue = 0
	} else if c.MaxQueue == 0 {
		c.MaxQueue = d.MaxQueue
	}
	if c.MaxSteps <= 0 {
		c.MaxSteps = d.MaxSteps
	}
	if c.RunTimeout <= 0 {
		c.RunTimeout = d.RunTimeout
	}
	if c.MaxDefences <= 0 {
		c.MaxDefences = d.MaxDefences
	}
	if c.MaxSocketsPerClient <= 0 {
		c.MaxSocketsPerClient = d.MaxSocketsPerClient
	}
	if c.MaxPace <= 0 {
		c.MaxPace = d.MaxPace
	}
	if c.PongWait <= 0 {
		c.PongWait = d.PongWait
	}
	if c.PingPeriod <= 0 || c.PingPeriod >= c.PongWait {
		c.PingPeriod = c.PongWait * 9 / 20
	}
	if c.WriteWait <= 0 {
		c.WriteWait = d.WriteWait
	}
	return c
}

// AttackDeps configure the explorer and the sweep pages. Unless Enabled they are
// left out (no route, no menu entry).
type AttackDeps struct {
	Config  AttackConfig
	Enabled bool
	// Runner executes the runs; nil runs them in this process.
	Runner Runner
}
