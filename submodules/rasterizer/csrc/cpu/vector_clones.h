// Hot loops are compiled twice, for AVX2 with FMA and for the baseline
// instruction set, and the loader picks the clone the CPU supports (an ELF
// ifunc, hence GCC on Linux only).
#pragma once

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define SPLAT_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SPLAT_VECTOR_CLONES
#endif
