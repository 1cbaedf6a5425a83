// One fixed pool of worker threads. Work is split by the caller into numbered tasks; each task
// writes only its own results, so the outcome never depends on the thread count or on timing.
// Implemented in src/core/thread_pool.cpp. parallel_for is not reentrant: do not call it from a
// task of the same pool. Idle threads poll for a few tens of microseconds before they sleep: a
// forward pass issues hundreds of short parallel loops per token, and a sleep/wake round trip
// per loop would cost more than the work.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace shoal {

class ThreadPool {
 public:
  // n_threads <= 0 means one per hardware thread. The calling thread also runs tasks, so a pool
  // of n threads starts n - 1 workers.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(0) ... fn(n_tasks - 1) across the pool and returns when all are done. If tasks
  // throw, the exception of the lowest-numbered failing task is rethrown here.
  void parallel_for(size_t n_tasks, const std::function<void(size_t)>& fn);

 private:
  void worker_loop();
  void run_tasks();

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t n_tasks_ = 0;
  size_t next_task_ = 0;
  // Written under mutex_; atomic so that waiting threads can poll them without it.
  std::atomic<size_t> tasks_finished_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  size_t first_failed_task_ = 0;
  std::exception_ptr first_error_;
};

}  // namespace shoal
