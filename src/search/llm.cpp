// The backend wrapper every call goes through (accounting, latency, error normalisation) and the
// helpers the backends share (llm_common.h).
#include <chrono>
#include <exception>
#include <thread>

#include "search/llm_common.h"
#include "shoal/llm.h"

namespace shoal {

LlmResponse LlmBackend::complete(const LlmRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  int attempts = 0;
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  if (request.cancel != nullptr && request.cancel->load()) search::throw_cancelled(name_);
  try {
    LlmResponse response = do_complete(request, attempts);
    response.attempts = std::max(attempts, 1);
    response.latency_s = seconds();
    std::lock_guard lock(mutex_);
    totals_.calls += 1;
    totals_.attempts += response.attempts;
    totals_.input_tokens += response.usage.input_tokens;
    totals_.output_tokens += response.usage.output_tokens;
    totals_.cost_usd += response.usage.cost_usd;
    return response;
  } catch (const LlmError& e) {
    std::lock_guard lock(mutex_);
    totals_.attempts += attempts;
    if (e.kind() != LlmErrorKind::kCancelled) {
      totals_.calls += 1;
      totals_.failures += 1;
    }
    throw;
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(mutex_);
      totals_.attempts += attempts;
      totals_.calls += 1;
      totals_.failures += 1;
    }
    throw LlmError(LlmErrorKind::kFailed, 0, "backend '" + name_ + "': " + e.what());
  }
}

LlmTotals LlmBackend::totals() const {
  std::lock_guard lock(mutex_);
  return totals_;
}

}  // namespace shoal

namespace shoal::search {

LlmErrorKind kind_for_status(int http_status) {
  if (http_status == 401 || http_status == 403 || http_status == 404) return LlmErrorKind::kFatal;
  return LlmErrorKind::kFailed;
}

bool retryable_status(int http_status) {
  return http_status == 408 || http_status == 409 || http_status == 429 ||
         (http_status >= 500 && http_status <= 599);
}

bool sleep_unless_cancelled(double seconds, const std::atomic<bool>* cancel) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(seconds));
  while (true) {
    if (cancel != nullptr && cancel->load()) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(end - now, std::chrono::milliseconds(20)));
  }
}

bool Semaphore::acquire(const std::atomic<bool>* cancel) {
  if (unlimited_) return true;
  std::unique_lock lock(mutex_);
  while (free_ == 0) {
    if (cancel != nullptr && cancel->load()) return false;
    cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
  --free_;
  return true;
}

void Semaphore::release() {
  if (unlimited_) return;
  {
    std::lock_guard lock(mutex_);
    ++free_;
  }
  cv_.notify_one();
}

std::string one_line(std::string_view text, size_t max) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void throw_cancelled(const std::string& backend) {
  throw LlmError(LlmErrorKind::kCancelled, 0, "backend '" + backend + "': call cancelled");
}

}  // namespace shoal::search
