#include "vireo/backend/thread_pool.h"

#include <algorithm>
#include <chrono>

#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VIREO_CPU_RELAX() _mm_pause()
#else
#define VIREO_CPU_RELAX() std::this_thread::yield()
#endif

namespace vireo {
namespace {

// How long an idle worker spins before it sleeps: long enough to bridge the gap between two
// ops of a forward pass, short enough not to steal a shared core for long.
constexpr auto kSpinTime = std::chrono::microseconds(300);
// How long the calling thread spins for late workers before it sleeps: on a busy machine a
// worker may have lost its core, and an idle core is what lets the OS move it here.
constexpr auto kJoinSpinTime = std::chrono::microseconds(50);

}  // namespace

ThreadPool::ThreadPool(unsigned n_threads) {
  if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  n_threads_ = n_threads;
  for (unsigned t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work(unsigned thread) {
  for (;;) {
    const int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_ || failed_.load(std::memory_order_relaxed)) return;
    try {
      (*fn_)(task, thread);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }
}

void ThreadPool::worker_main(unsigned thread) {
  uint32_t seen = 0;
  for (;;) {
    // Wait for a new generation: spin, then sleep.
    uint32_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      const auto until = std::chrono::steady_clock::now() + kSpinTime;
      int spins = 0;
      while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
        VIREO_CPU_RELAX();
        if (++spins % 64 != 0) continue;
        sched_yield();  // on a busy machine, let whatever waits for this core run
        if (std::chrono::steady_clock::now() > until) {
          sleeping_workers_.fetch_add(1);
          generation_.wait(seen);
          sleeping_workers_.fetch_sub(1);
        }
      }
    }
    seen = gen;
    if (stop_.load()) return;
    work(thread);
    busy_workers_.fetch_sub(1);
    if (caller_sleeping_.load()) busy_workers_.notify_all();
  }
}

void ThreadPool::run(int64_t n_tasks, const TaskFn& fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  fn_ = &fn;
  n_tasks_ = n_tasks;
  failed_.store(false);
  error_ = nullptr;
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<unsigned>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  if (sleeping_workers_.load() > 0) generation_.notify_all();
  work(0);
  if (busy_workers_.load(std::memory_order_acquire) != 0) {
    const auto until = std::chrono::steady_clock::now() + kJoinSpinTime;
    int spins = 0;
    unsigned busy;
    while ((busy = busy_workers_.load(std::memory_order_acquire)) != 0) {
      VIREO_CPU_RELAX();
      if (++spins % 64 != 0) continue;
      sched_yield();
      if (std::chrono::steady_clock::now() > until) {
        caller_sleeping_.store(true);
        while ((busy = busy_workers_.load()) != 0) busy_workers_.wait(busy);
        caller_sleeping_.store(false);
      }
    }
  }
  fn_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

}  // namespace vireo
