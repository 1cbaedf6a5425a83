// Pieces shared by the LLM backends (internal to the search layer): the HTTP status policy, a
// cancellable wait, and a counting semaphore whose wait can be cancelled.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>

#include "shoal/llm.h"

namespace shoal::search {

// 401 / 403 / 404: the key, the permission or the URL/model is wrong, and every call will fail the
// same way: kFatal. Anything else that is not retried (400, 422, ...): this call failed.
LlmErrorKind kind_for_status(int http_status);
// 408, 409, 429 and 5xx: worth another try.
bool retryable_status(int http_status);

// Sleeps `seconds`, waking every 20 ms to look at `cancel`; returns false when cancelled.
bool sleep_unless_cancelled(double seconds, const std::atomic<bool>* cancel);

// At most `limit` holders at once (limit <= 0: no limit).
class Semaphore {
 public:
  explicit Semaphore(int limit) : free_(limit), unlimited_(limit <= 0) {}
  // Returns false (without the permit) when cancelled while waiting.
  bool acquire(const std::atomic<bool>* cancel);
  void release();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int free_;
  bool unlimited_;
};

// Holds a permit for a scope.
class SemaphoreGuard {
 public:
  SemaphoreGuard(Semaphore& s, const std::atomic<bool>* cancel) : s_(s), held_(s.acquire(cancel)) {}
  ~SemaphoreGuard() {
    if (held_) s_.release();
  }
  bool held() const { return held_; }

 private:
  Semaphore& s_;
  bool held_;
};

// A message cut to one line of at most `max` bytes (newlines and tabs become spaces).
std::string one_line(std::string_view text, size_t max = 300);

[[noreturn]] void throw_cancelled(const std::string& backend);

}  // namespace shoal::search
