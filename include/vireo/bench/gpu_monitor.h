// The GPU as NVML reports it, sampled on its own thread: utilization, clocks, power, temperature,
// memory used and the reasons clocks are held down, and on GPUs with GPM (Hopper and later) the
// SM, tensor-core and DRAM-bandwidth utilisation between samples. NVML is loaded at run time
// (libnvidia-ml.so.1, shipped with the driver), so vireo needs no CUDA to build or run; without
// it the monitor says why it is unavailable and records nothing.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vireo {

class GpuMonitor {
 public:
  struct Sample {
    double t_s = 0;                   // since start()
    unsigned gpu_util_pct = 0;        // share of the period a kernel was running (not compute use)
    unsigned mem_util_pct = 0;        // share of the period device memory was read or written
    unsigned sm_clock_mhz = 0, mem_clock_mhz = 0;
    double power_w = 0;
    unsigned temperature_c = 0;
    uint64_t memory_used_bytes = 0, memory_total_bytes = 0;
    std::vector<std::string> throttle_reasons;  // decoded, empty when clocks run free
    // GPM, over the period since the previous sample (has_gpm false when not measured): unlike
    // gpu_util_pct these say how much of the SMs and of the DRAM bandwidth the kernels used.
    bool has_gpm = false;
    double sm_util_pct = 0;        // share of SM cycles with at least one warp resident
    double sm_occupancy_pct = 0;   // resident warps over the SMs' maximum
    double tensor_util_pct = 0;    // share of cycles any tensor-core pipe was busy
    double dram_bw_util_pct = 0;   // DRAM bandwidth used over the peak
  };

  // Opens NVML and device `index`; never throws (see available() and reason()).
  explicit GpuMonitor(unsigned index = 0, int period_ms = 100);
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  bool available() const { return available_; }
  const std::string& reason() const { return reason_; }  // why not available
  const std::string& device_name() const { return name_; }
  bool gpm_available() const { return gpm_available_; }
  const std::string& gpm_reason() const { return gpm_reason_; }  // why GPM metrics are not sampled

  void start();  // no-op when unavailable
  void stop();
  std::vector<Sample> samples() const;
  bool sample_now(Sample& out) const;  // one reading, false when unavailable

  // NVML's clock throttle reason bits, by name ("sw_power_cap", "hw_thermal_slowdown", ...).
  static std::vector<std::string> decode_throttle_reasons(uint64_t bits);

 private:
  struct Api;
  Api* api_ = nullptr;
  void* device_ = nullptr;
  bool available_ = false, gpm_available_ = false;
  std::string reason_, name_, gpm_reason_;
  int period_ms_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Sample> samples_;

  void open_gpm();
  // GPM metrics between two GPM samples into `s`; false when NVML refuses them.
  bool read_gpm(void* earlier, void* later, Sample& s) const;
};

}  // namespace vireo
