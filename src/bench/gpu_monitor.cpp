#include "vireo/bench/gpu_monitor.h"

#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <utility>
#include <type_traits>

namespace vireo {
namespace {

// The few parts of NVML's documented C API used here, declared by hand: no NVIDIA headers needed.
using NvmlReturn = int;  // nvmlReturn_t; 0 is NVML_SUCCESS
using NvmlDevice = void*;
struct NvmlUtilization {
  unsigned int gpu, memory;
};
struct NvmlMemory {
  unsigned long long total, free, used;
};
constexpr int kClockSm = 1, kClockMem = 2;  // nvmlClockType_t
constexpr int kTemperatureGpu = 0;          // nvmlTemperatureSensors_t

// GPM (GPU performance monitoring, nvmlGpm*): metrics are computed between two samples.
using NvmlGpmSample = void*;
constexpr unsigned kGpmSmUtil = 2, kGpmSmOccupancy = 3, kGpmAnyTensorUtil = 5, kGpmDramBwUtil = 10;  // NVML_GPM_METRIC_*
struct NvmlGpmMetric {
  unsigned int metric_id;
  NvmlReturn status;
  double value;
  struct {
    char *short_name, *long_name, *unit;
  } info;
};
struct NvmlGpmMetricsGet {
  unsigned int version;  // NVML_GPM_METRICS_GET_VERSION
  unsigned int num_metrics;
  NvmlGpmSample sample1, sample2;
  NvmlGpmMetric metrics[4];  // NVML reads num_metrics entries
};
struct NvmlGpmSupport {
  unsigned int version;  // NVML_GPM_SUPPORT_VERSION
  unsigned int is_supported_device;
};

struct ThrottleBit {
  uint64_t bit;
  const char* name;
};
constexpr ThrottleBit kThrottleBits[] = {
    {0x1, "gpu_idle"},           {0x2, "applications_clocks_setting"}, {0x4, "sw_power_cap"},
    {0x8, "hw_slowdown"},        {0x10, "sync_boost"},                 {0x20, "sw_thermal_slowdown"},
    {0x40, "hw_thermal_slowdown"}, {0x80, "hw_power_brake_slowdown"},  {0x100, "display_clock_setting"},
};

}  // namespace

struct GpuMonitor::Api {
  void* lib = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  NvmlReturn (*handle_by_index)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*name)(NvmlDevice, char*, unsigned int) = nullptr;
  NvmlReturn (*utilization)(NvmlDevice, NvmlUtilization*) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*clock)(NvmlDevice, int, unsigned int*) = nullptr;
  NvmlReturn (*power)(NvmlDevice, unsigned int*) = nullptr;
  NvmlReturn (*temperature)(NvmlDevice, int, unsigned int*) = nullptr;
  NvmlReturn (*throttle)(NvmlDevice, unsigned long long*) = nullptr;
  NvmlReturn (*gpm_support)(NvmlDevice, NvmlGpmSupport*) = nullptr;
  NvmlReturn (*gpm_alloc)(NvmlGpmSample*) = nullptr;
  NvmlReturn (*gpm_free)(NvmlGpmSample) = nullptr;
  NvmlReturn (*gpm_get)(NvmlDevice, NvmlGpmSample) = nullptr;
  NvmlReturn (*gpm_metrics)(NvmlGpmMetricsGet*) = nullptr;

  std::string describe(NvmlReturn r) const {
    const char* s = error_string != nullptr ? error_string(r) : nullptr;
    return s != nullptr ? std::string(s) : "NVML error " + std::to_string(r);
  }
};

GpuMonitor::GpuMonitor(unsigned index, int period_ms) : period_ms_(period_ms < 10 ? 10 : period_ms) {
  void* lib = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = ::dlerror();
    reason_ = std::string("NVML not found (no NVIDIA driver): ") + (why != nullptr ? why : "libnvidia-ml.so.1");
    return;
  }
  api_ = new Api;
  api_->lib = lib;
  auto load = [&](auto& fn, const char* symbol) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, symbol));
    return fn != nullptr;
  };
  load(api_->error_string, "nvmlErrorString");
  const bool ok = load(api_->init, "nvmlInit_v2") && load(api_->shutdown, "nvmlShutdown") &&
                  load(api_->handle_by_index, "nvmlDeviceGetHandleByIndex_v2") &&
                  load(api_->name, "nvmlDeviceGetName") && load(api_->utilization, "nvmlDeviceGetUtilizationRates") &&
                  load(api_->memory, "nvmlDeviceGetMemoryInfo") && load(api_->clock, "nvmlDeviceGetClockInfo") &&
                  load(api_->power, "nvmlDeviceGetPowerUsage") && load(api_->temperature, "nvmlDeviceGetTemperature") &&
                  load(api_->throttle, "nvmlDeviceGetCurrentClocksThrottleReasons");
  if (!ok) {
    reason_ = "NVML is too old: a function this monitor needs is missing";
    ::dlclose(lib);
    delete api_;
    api_ = nullptr;
    return;
  }
  if (const NvmlReturn r = api_->init(); r != 0) {
    reason_ = "NVML did not start: " + api_->describe(r);
    ::dlclose(lib);
    delete api_;
    api_ = nullptr;
    return;
  }
  if (const NvmlReturn r = api_->handle_by_index(index, &device_); r != 0) {
    reason_ = "no GPU " + std::to_string(index) + ": " + api_->describe(r);
    return;  // NVML stays initialised until the destructor shuts it down
  }
  char name[96] = {};
  if (api_->name(device_, name, sizeof name) == 0) name_ = name;
  available_ = true;
  open_gpm();
}

void GpuMonitor::open_gpm() {
  auto load = [&](auto& fn, const char* symbol) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(api_->lib, symbol));
    return fn != nullptr;
  };
  if (!(load(api_->gpm_support, "nvmlGpmQueryDeviceSupport") && load(api_->gpm_alloc, "nvmlGpmSampleAlloc") &&
        load(api_->gpm_free, "nvmlGpmSampleFree") && load(api_->gpm_get, "nvmlGpmSampleGet") &&
        load(api_->gpm_metrics, "nvmlGpmMetricsGet"))) {
    gpm_reason_ = "this NVML has no GPM functions (driver older than 520)";
    return;
  }
  NvmlGpmSupport support{1, 0};
  if (const NvmlReturn r = api_->gpm_support(device_, &support); r != 0) {
    gpm_reason_ = "GPM support query failed: " + api_->describe(r);
    return;
  }
  if (support.is_supported_device == 0) {
    gpm_reason_ = "this GPU has no GPM (it needs Hopper or later)";
    return;
  }
  // A trial pair of samples: inside containers or under a profiler the counters may be refused.
  NvmlGpmSample a = nullptr, b = nullptr;
  if (api_->gpm_alloc(&a) != 0 || api_->gpm_alloc(&b) != 0) {
    gpm_reason_ = "GPM sample buffers could not be allocated";
  } else if (const NvmlReturn r = api_->gpm_get(device_, a); r != 0) {
    gpm_reason_ = "GPM sampling refused: " + api_->describe(r);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    Sample probe;
    if (api_->gpm_get(device_, b) == 0 && read_gpm(a, b, probe)) gpm_available_ = true;
    else gpm_reason_ = "GPM metrics refused by NVML";
  }
  if (a != nullptr) api_->gpm_free(a);
  if (b != nullptr) api_->gpm_free(b);
}

bool GpuMonitor::read_gpm(void* earlier, void* later, Sample& s) const {
  NvmlGpmMetricsGet get{};
  get.version = 1;
  get.num_metrics = 4;
  get.sample1 = earlier;
  get.sample2 = later;
  const unsigned ids[4] = {kGpmSmUtil, kGpmSmOccupancy, kGpmAnyTensorUtil, kGpmDramBwUtil};
  for (int i = 0; i < 4; ++i) get.metrics[i].metric_id = ids[i];
  if (api_->gpm_metrics(&get) != 0) return false;
  double* fields[4] = {&s.sm_util_pct, &s.sm_occupancy_pct, &s.tensor_util_pct, &s.dram_bw_util_pct};
  bool any = false;
  for (int i = 0; i < 4; ++i) {
    // A metric this board lacks stays 0; so does one NVML could not compute for the period
    // (it reports NaN when the two samples are too close together).
    if (get.metrics[i].status != 0 || !std::isfinite(get.metrics[i].value)) continue;
    *fields[i] = get.metrics[i].value;
    any = true;
  }
  s.has_gpm = any;
  return any;
}

GpuMonitor::~GpuMonitor() {
  stop();
  if (api_ != nullptr) {
    api_->shutdown();
    ::dlclose(api_->lib);
    delete api_;
  }
}

std::vector<std::string> GpuMonitor::decode_throttle_reasons(uint64_t bits) {
  std::vector<std::string> names;
  for (const auto& t : kThrottleBits) {
    if (bits & t.bit) names.emplace_back(t.name);
    bits &= ~t.bit;
  }
  if (bits != 0) names.push_back("other");
  return names;
}

bool GpuMonitor::sample_now(Sample& s) const {
  if (!available_) return false;
  // A query that fails (not supported on this board) leaves its field at zero.
  NvmlUtilization u{};
  if (api_->utilization(device_, &u) == 0) s.gpu_util_pct = u.gpu, s.mem_util_pct = u.memory;
  unsigned int v = 0;
  if (api_->clock(device_, kClockSm, &v) == 0) s.sm_clock_mhz = v;
  if (api_->clock(device_, kClockMem, &v) == 0) s.mem_clock_mhz = v;
  if (api_->power(device_, &v) == 0) s.power_w = v / 1000.0;  // milliwatts
  if (api_->temperature(device_, kTemperatureGpu, &v) == 0) s.temperature_c = v;
  NvmlMemory m{};
  if (api_->memory(device_, &m) == 0) s.memory_used_bytes = m.used, s.memory_total_bytes = m.total;
  unsigned long long reasons = 0;
  if (api_->throttle(device_, &reasons) == 0) s.throttle_reasons = decode_throttle_reasons(reasons);
  return true;
}

void GpuMonitor::start() {
  if (!available_ || running_.exchange(true)) return;
  thread_ = std::thread([this] {
    const auto t0 = std::chrono::steady_clock::now();
    // GPM: each tick reads a new sample and the metrics over the period since the last one.
    NvmlGpmSample gpm[2] = {nullptr, nullptr};
    bool have_earlier = false;
    if (gpm_available_ && (api_->gpm_alloc(&gpm[0]) != 0 || api_->gpm_alloc(&gpm[1]) != 0)) {
      if (gpm[0] != nullptr) api_->gpm_free(gpm[0]);
      gpm[0] = gpm[1] = nullptr;
    }
    while (running_.load()) {
      Sample s;
      s.t_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      sample_now(s);
      if (gpm[1] != nullptr && api_->gpm_get(device_, gpm[1]) == 0) {
        if (have_earlier) read_gpm(gpm[0], gpm[1], s);
        std::swap(gpm[0], gpm[1]);
        have_earlier = true;
      }
      {
        std::lock_guard lock(mu_);
        samples_.push_back(std::move(s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(period_ms_));
    }
    for (NvmlGpmSample g : gpm) {
      if (g != nullptr) api_->gpm_free(g);
    }
  });
}

void GpuMonitor::stop() {
  if (!running_.exchange(false)) return;
  if (thread_.joinable()) thread_.join();
}

std::vector<GpuMonitor::Sample> GpuMonitor::samples() const {
  std::lock_guard lock(mu_);
  return samples_;
}

}  // namespace vireo
