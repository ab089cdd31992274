#include "textflag.h"

// The sign bit of each float32; also -0's bits.
DATA signBits<>+0(SB)/4, $0x80000000
GLOBL signBits<>(SB), RODATA|NOPTR, $4

// func signStepAVX(x, d, flo, fhi *float32, n int, alpha float32)
//
// Per value, as signStep: s = ±|alpha| with d's sign where d is neither zero nor NaN,
// else -0 (adding -0 leaves every value as it is); v = x + s; then x = v where
// flo ≤ v ≤ fhi, fhi where v > fhi, flo otherwise (v below flo, or NaN). The
// comparisons are the ordered, quiet ones: false when either side is NaN.
TEXT ·signStepAVX(SB), NOSPLIT, $0-44
	MOVQ         x+0(FP), DI
	MOVQ         d+8(FP), SI
	MOVQ         flo+16(FP), R8
	MOVQ         fhi+24(FP), R9
	MOVQ         n+32(FP), CX
	VBROADCASTSS alpha+40(FP), Y0
	VBROADCASTSS signBits<>(SB), Y1
	VANDNPS      Y0, Y1, Y0            // |alpha|
	VXORPS       Y2, Y2, Y2            // +0

loop:
	CMPQ      CX, $8
	JL        done
	VMOVUPS   (SI), Y3                 // d
	VCMPPS    $0x0C, Y2, Y3, Y5        // d != 0, ordered (NEQ_OQ)
	VANDPS    Y1, Y3, Y6               // d's sign
	VORPS     Y0, Y6, Y6               // ±|alpha|
	VBLENDVPS Y5, Y6, Y1, Y6           // the step where d moves, else -0
	VADDPS    (DI), Y6, Y7             // v = x + s
	VMOVUPS   (R8), Y8                 // flo
	VMOVUPS   (R9), Y9                 // fhi
	VCMPPS    $0x1D, Y8, Y7, Y10       // v >= flo (GE_OQ)
	VCMPPS    $0x12, Y9, Y7, Y11       // v <= fhi (LE_OQ)
	VANDPS    Y10, Y11, Y10            // inside
	VCMPPS    $0x1E, Y9, Y7, Y11       // v > fhi (GT_OQ)
	VBLENDVPS Y11, Y9, Y8, Y12         // above ? fhi : flo
	VBLENDVPS Y10, Y7, Y12, Y12        // inside ? v : that end
	VMOVUPS   Y12, (DI)
	ADDQ      $32, DI
	ADDQ      $32, SI
	ADDQ      $32, R8
	ADDQ      $32, R9
	SUBQ      $8, CX
	JMP       loop

done:
	VZEROUPPER
	RET
