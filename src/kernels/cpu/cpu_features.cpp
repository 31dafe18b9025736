#include "vireo/kernels/cpu/cpu_features.h"

#include <string>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "vireo/core/error.h"

namespace vireo::cpu {
namespace {

// AMX needs both the CPU bits (CPUID.7.0:EDX bits 24 tile, 25 int8) and Linux's consent to the
// 8 KiB of tile state per thread (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16+).
bool detect_amx_int8() {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!((d >> 24) & 1) || !((d >> 25) & 1)) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// Bits that not every compiler's __builtin_cpu_supports knows (clang 14: f16c, avx512bf16).
bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
#if defined(__x86_64__)
  unsigned r[4];
  if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) return false;
  return ((r[reg] >> bit) & 1) != 0;
#else
  return false;
#endif
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = cpuid_bit(1, 0, 2, 29);  // ECX.29
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512dq = __builtin_cpu_supports("avx512dq");
    f.avx512vnni = __builtin_cpu_supports("avx512vnni");
    f.avx512bf16 = cpuid_bit(7, 1, 0, 5);  // leaf 7.1 EAX.5
    f.amx_int8 = detect_amx_int8();
#endif
    return f;
  }();
  return features;
}

Isa best_isa() {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni) {
    return f.amx_int8 ? Isa::Amx : Isa::Avx512;
  }
  if (avx2) return Isa::Avx2;
  return Isa::Scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Amx: return "amx";
  }
  return "scalar";
}

Isa choose_isa(std::string_view requested) {
  const Isa best = best_isa();
  if (requested.empty()) return best;
  Isa want;
  if (requested == "scalar") want = Isa::Scalar;
  else if (requested == "avx2") want = Isa::Avx2;
  else if (requested == "avx512") want = Isa::Avx512;
  else if (requested == "amx") want = Isa::Amx;
  else fail(ErrorCode::InvalidArgument, "unknown instruction set '{}' (choose scalar, avx2, avx512 or amx)", std::string(requested));
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

}  // namespace vireo::cpu
