// Splits [0, n) into contiguous chunks over the machine's cores. For load-time work
// (synthesis, quantization); the inference engine has its own persistent pool.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace vireo {

template <typename Fn>  // Fn(int64_t begin, int64_t end)
void parallel_for(int64_t n, Fn&& fn, unsigned n_threads = 0) {
  if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  n_threads = static_cast<unsigned>(std::min<int64_t>(n_threads, std::max<int64_t>(n, 1)));
  if (n_threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(n_threads);
  const int64_t chunk = (n + n_threads - 1) / n_threads;
  for (unsigned t = 0; t < n_threads; ++t) {
    threads.emplace_back([&, t] {
      const int64_t b = t * chunk, e = std::min(n, b + chunk);
      try {
        if (b < e) fn(b, e);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace vireo
