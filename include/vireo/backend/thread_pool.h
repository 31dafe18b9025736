// A persistent pool of worker threads for the CPU backend: started once, reused by every op.
// A job is a count of tasks handed out one at a time from an atomic counter, so a thread that
// the OS delays (a shared machine) does not hold up the rest; the calling thread works too.
// Idle workers spin briefly (ops of one forward pass follow each other within microseconds),
// then sleep on a futex; the caller, waiting for the last tasks, does the same.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vireo {

class ThreadPool {
 public:
  // n_threads counts the caller: 1 means no workers. 0: one per core.
  explicit ThreadPool(unsigned n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return n_threads_; }

  // Calls fn(task, thread) for every task in [0, n_tasks), spread over the threads (thread is
  // 0..size()-1, 0 being the caller); returns when all have finished. An exception thrown by a
  // task is rethrown here (the remaining tasks are skipped). Not reentrant.
  using TaskFn = std::function<void(int64_t task, unsigned thread)>;
  void run(int64_t n_tasks, const TaskFn& fn);

 private:
  void worker_main(unsigned thread);
  void work(unsigned thread);

  unsigned n_threads_ = 1;
  std::vector<std::thread> workers_;

  // The current job.
  const TaskFn* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  alignas(64) std::atomic<int64_t> next_task_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped to start a job (and to stop)
  alignas(64) std::atomic<unsigned> busy_workers_{0};
  alignas(64) std::atomic<unsigned> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace vireo
