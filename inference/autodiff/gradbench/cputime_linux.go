package gradbench

import (
	"syscall"
	"time"
	"unsafe"
)

// clock_gettime clocks: every thread of the process (ONNX Runtime's intra-op threads
// included), and the calling thread alone.
const (
	clockProcessCPUTime = 2
	clockThreadCPUTime  = 3
)

// cpuTime is the process's CPU time so far; ok is false where it cannot be read.
func cpuTime() (d time.Duration, ok bool) { return clockTime(clockProcessCPUTime) }

// threadCPUTime is the calling OS thread's CPU time so far (lock the goroutine to its
// thread around the work measured).
func threadCPUTime() (d time.Duration, ok bool) { return clockTime(clockThreadCPUTime) }

func clockTime(clock uintptr) (time.Duration, bool) {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clock, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
