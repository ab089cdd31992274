//go:build !linux

package gradbench

import "time"

// cpuTime is not read outside Linux: only wall times are reported there.
func cpuTime() (time.Duration, bool) { return 0, false }

func threadCPUTime() (time.Duration, bool) { return 0, false }
