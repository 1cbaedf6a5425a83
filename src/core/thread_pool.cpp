#include "shoal/thread_pool.h"

#include <exception>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace shoal {
namespace {

// About 50-100 microseconds of polling before a thread sleeps on a condition variable.
constexpr int kSpinRounds = 2000;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0)
    n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

// Claims tasks one at a time until none are left. Called with mutex_ unlocked.
void ThreadPool::run_tasks() {
  std::unique_lock lock(mutex_);
  while (next_task_ < n_tasks_) {
    const size_t task = next_task_++;
    const auto* job = job_;
    lock.unlock();
    std::exception_ptr error;
    try {
      (*job)(task);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error && (!first_error_ || task < first_failed_task_)) {
      first_error_ = error;
      first_failed_task_ = task;
    }
    if (++tasks_finished_ == n_tasks_) done_.notify_all();
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen_generation = 0;
  for (;;) {
    for (int i = 0; i < kSpinRounds; ++i) {
      if (generation_.load(std::memory_order_acquire) != seen_generation ||
          stopping_.load(std::memory_order_acquire)) {
        break;
      }
      cpu_relax();
    }
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
    }
    run_tasks();
  }
}

void ThreadPool::parallel_for(size_t n_tasks, const std::function<void(size_t)>& fn) {
  if (n_tasks == 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (size_t i = 0; i < n_tasks; ++i) fn(i);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    job_ = &fn;
    n_tasks_ = n_tasks;
    next_task_ = 0;
    tasks_finished_ = 0;
    first_error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  run_tasks();
  for (int i = 0; i < kSpinRounds; ++i) {
    if (tasks_finished_.load(std::memory_order_acquire) == n_tasks) break;
    cpu_relax();
  }
  std::exception_ptr error;
  {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return tasks_finished_ == n_tasks_; });
    job_ = nullptr;
    n_tasks_ = 0;
    error = first_error_;
    first_error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace shoal
