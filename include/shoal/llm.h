// LLM backends behind one interface: chat messages in, text and token usage out. The search
// (shoal search) calls them from several threads and never knows which kind runs:
// - HTTP: any OpenAI-compatible chat-completions server (OpenAI and most hosted providers, vLLM,
//   llama.cpp's server, Ollama), over libcurl, with hard timeouts, retries with exponential
//   backoff on 429 / 5xx / timeouts (honouring Retry-After), a concurrency limit, and cost
//   accounting from per-million-token prices.
// - engine: shoal's own inference engine in-process (the model is loaded once; calls are
//   serialised because one call already uses every core).
// - mock: scripted answers chosen by the request's seed, for tests and offline examples.
//
// Thread safety: complete() and totals() may be called from any number of threads at once.
//
// Implemented in src/search/: llm.cpp (the shared wrapper: accounting, errors), llm_http.cpp,
// llm_engine.cpp, llm_mock.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/error.h"
#include "shoal/tokenizer.h"  // ChatMessage

namespace shoal {

struct LlmRequest {
  std::vector<ChatMessage> messages;
  uint64_t seed = 0;  // the mock's and the engine's sampler seed; HTTP: the retry jitter's
  // When it becomes true the call stops as soon as it can (an HTTP transfer is aborted, a backoff
  // wait ends) and throws LlmError of kind kCancelled. May be null.
  const std::atomic<bool>* cancel = nullptr;
};

struct LlmUsage {
  int64_t input_tokens = 0;   // as the server reports them (prompt_tokens)
  int64_t output_tokens = 0;  // completion_tokens
  double cost_usd = 0;        // from the backend's prices
};

struct LlmResponse {
  std::string text;
  std::string finish_reason;  // "stop", "length", ... as the server says; may be empty
  LlmUsage usage;
  int attempts = 1;      // HTTP: 1 + retries
  double latency_s = 0;  // wall time of the whole call, retries and waits included
};

enum class LlmErrorKind {
  kFailed,     // this call failed: retries exhausted (429, 5xx, timeouts, network), a 400, or a
               // reply that is not the expected JSON; other calls may succeed
  kFatal,      // every call will fail until the configuration changes (401, 403, 404): stop
  kCancelled,  // LlmRequest::cancel was set
};

// One line naming the backend, the HTTP status (when there was one) and the server's message.
class LlmError : public Error {
 public:
  LlmError(LlmErrorKind kind, int http_status, const std::string& message)
      : Error(message), kind_(kind), http_status_(http_status) {}
  LlmErrorKind kind() const { return kind_; }
  int http_status() const { return http_status_; }  // 0 when there was no HTTP reply

 private:
  LlmErrorKind kind_;
  int http_status_;
};

// What a backend has used so far.
struct LlmTotals {
  int64_t calls = 0;     // completed calls, failed ones included (cancelled ones not)
  int64_t failures = 0;  // calls that threw kFailed or kFatal
  int64_t attempts = 0;  // HTTP requests sent, retries included
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double cost_usd = 0;
};

class LlmBackend {
 public:
  explicit LlmBackend(std::string name) : name_(std::move(name)) {}
  virtual ~LlmBackend() = default;
  LlmBackend(const LlmBackend&) = delete;
  LlmBackend& operator=(const LlmBackend&) = delete;

  // Runs one call and adds it to totals(). Throws LlmError (any other exception from a backend
  // is turned into LlmError kFailed naming the backend).
  LlmResponse complete(const LlmRequest& request);

  const std::string& name() const { return name_; }
  LlmTotals totals() const;
  // "http gpt-4o-mini at https://api.openai.com/v1", "engine models/tiny", "mock (3 answers)"
  virtual std::string describe() const = 0;

 protected:
  // The backend's own work; `attempts` counts the HTTP requests it sent (also on failure).
  virtual LlmResponse do_complete(const LlmRequest& request, int& attempts) = 0;

 private:
  std::string name_;
  mutable std::mutex mutex_;
  LlmTotals totals_;
};

// Per-million-token prices in USD -> the cost of one call.
struct LlmPrices {
  double input_per_million = 0;
  double output_per_million = 0;
  double cost(int64_t input_tokens, int64_t output_tokens) const {
    return (static_cast<double>(input_tokens) * input_per_million +
            static_cast<double>(output_tokens) * output_per_million) *
           1e-6;
  }
};

struct HttpBackendOptions {
  std::string name;      // for messages and logs
  std::string base_url;  // e.g. "https://api.openai.com/v1"; POSTs to <base_url>/chat/completions
  std::string model;     // the request's "model"
  std::string api_key_env;  // environment variable holding the key; empty: no Authorization
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> max_tokens;
  std::vector<std::string> stop;
  nlohmann::json extra_body = nlohmann::json::object();  // merged into every request body
  double connect_timeout_s = 10;
  double timeout_s = 600;        // the whole request, per attempt
  int max_retries = 4;           // after the first attempt
  double backoff_initial_s = 1;  // the wait before retry r is initial * 2^r (capped), jittered
  double backoff_max_s = 60;
  double retry_after_max_s = 300;  // a longer Retry-After is cut to this
  int concurrency = 0;             // requests in flight at once; 0: no limit of its own
  LlmPrices prices;
  uint64_t seed = 0;  // the jitter's seed (with each request's seed)
};

// Reads the key from the environment now: ConfigError naming the variable when it is unset or
// empty, and for a base_url that is not http:// or https://.
std::unique_ptr<LlmBackend> make_http_backend(const HttpBackendOptions& options);

struct EngineBackendOptions {
  std::string name;
  std::filesystem::path model;  // HF folder or .gguf
  int max_tokens = 512;
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;
  float top_p = 1.0f;
  std::vector<std::string> stop;  // the answer ends before the first of these strings
  bool chat_template = true;      // false: the messages' contents joined by blank lines
  int threads = 0;                // 0: one per core
};

// Loads the model and its tokenizer (the errors of load_model).
std::unique_ptr<LlmBackend> make_engine_backend(const EngineBackendOptions& options);

struct MockBackendOptions {
  std::string name;
  // The answer of a call is answers[i], i drawn from the request's seed. In an answer, "{n}"
  // becomes a number in [0, 1000) drawn from the seed and "{call}" the call's number (0, 1, ...
  // in call order). An answer "!error STATUS [message]" makes the call fail as an HTTP backend
  // would for that status (401, 403, 404 -> kFatal; others -> kFailed).
  std::vector<std::string> answers;
  double latency_s = 0;  // sleep per call (cancellable)
  LlmPrices prices;      // tokens are counted as ceil(bytes / 4)
};

// ConfigError when answers is empty.
std::unique_ptr<LlmBackend> make_mock_backend(const MockBackendOptions& options);

}  // namespace shoal
