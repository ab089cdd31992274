package gradbench

import (
	"syscall"
	"time"
	"unsafe"
)

// clockProcessCPUTime is CLOCK_PROCESS_CPUTIME_ID: the CPU time of every thread of
// the process, ONNX Runtime's intra-op threads included.
const clockProcessCPUTime = 2

// cpuTime is the process's CPU time so far; ok is false where it cannot be read.
func cpuTime() (d time.Duration, ok bool) {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockProcessCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
