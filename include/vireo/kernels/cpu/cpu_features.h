// Which instruction-set level the CPU kernels use. The library is built for baseline x86-64;
// the AVX2 and AVX-512 kernels are compiled with target attributes and chosen at run time.
#pragma once
#include <string_view>

namespace vireo::cpu {

enum class Isa {
  Scalar,  // portable C++ (any CPU)
  Avx2,    // AVX2 + FMA + F16C
  Avx512,  // AVX-512 F/BW/VL/DQ + VNNI (Ice Lake, Zen 4 and later)
  Amx,     // AVX-512 plus AMX int8 tiles for batched matmuls (Sapphire Rapids and later)
};

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false;
  bool amx_int8 = false;  // the CPU has AMX-INT8 and the OS let this process use tile data
};

// Whether kernels of this level may use AVX-512 (Amx includes it).
constexpr bool uses_avx512(Isa isa) { return isa == Isa::Avx512 || isa == Isa::Amx; }

const CpuFeatures& cpu_features();
Isa best_isa();                              // the highest level this CPU runs
const char* isa_name(Isa isa);               // "scalar", "avx2", "avx512", "amx"
// Parses a name (or "" for best_isa()) and caps it at what the CPU supports.
Isa choose_isa(std::string_view requested);

}  // namespace vireo::cpu
