// The OpenAI-compatible chat-completions client over libcurl. One POST per attempt to
// <base_url>/chat/completions; 429, 408, 409, 5xx, timeouts and dropped connections are retried
// with exponential backoff (jitter drawn from the seeds, so a run's waits are reproducible) and
// Retry-After / retry-after-ms are honoured; 401/403/404 are fatal; other errors fail the call.
// Easy handles are pooled so connections are kept alive between calls.
#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "search/llm_common.h"
#include "shoal/llm.h"
#include "shoal/rng.h"

namespace shoal::search {
namespace {

constexpr size_t kMaxReplyBytes = 64u << 20;

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Reply {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::optional<double> retry_after_s;
  std::string curl_error;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* reply = static_cast<Reply*>(user);
  const size_t bytes = size * n;
  if (reply->body.size() + bytes > kMaxReplyBytes) return 0;  // aborts with CURLE_WRITE_ERROR
  reply->body.append(data, bytes);
  return bytes;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Retry-After (delta-seconds or an HTTP date) and the retry-after-ms some providers send.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* reply = static_cast<Reply*>(user);
  const std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) reply->retry_after_s.reset();  // a new response's headers
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  const std::string key = lower(trim(line.substr(0, colon)));
  const std::string value = trim(line.substr(colon + 1));
  char* end = nullptr;
  if (key == "retry-after-ms") {
    const double ms = std::strtod(value.c_str(), &end);
    if (end != value.c_str() && ms >= 0) reply->retry_after_s = ms / 1000.0;
  } else if (key == "retry-after" && !reply->retry_after_s) {
    const double s = std::strtod(value.c_str(), &end);
    if (end != value.c_str() && *end == '\0' && s >= 0) {
      reply->retry_after_s = s;
    } else if (const time_t when = curl_getdate(value.c_str(), nullptr); when > 0) {
      reply->retry_after_s = std::max(0.0, std::difftime(when, std::time(nullptr)));
    }
  }
  return size * n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancel = static_cast<const std::atomic<bool>*>(user);
  return cancel != nullptr && cancel->load() ? 1 : 0;
}

// Network trouble that another attempt may not meet.
bool retryable_curl(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// Failures no retry and no other call can get past (the URL or the TLS setup is wrong).
bool fatal_curl(CURLcode code) {
  return code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_URL_MALFORMAT ||
         code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
         code == CURLE_SSL_CERTPROBLEM;
}

// The server's own words: OpenAI's {"error": {"message": ...}}, {"error": "..."}, {"message":
// ...}, {"detail": ...} (FastAPI servers), else the start of the body.
std::string server_message(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object()) {
    const auto pick = [](const nlohmann::json& v) -> std::optional<std::string> {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("message") && v["message"].is_string()) {
        return v["message"].get<std::string>();
      }
      return std::nullopt;
    };
    for (const char* key : {"error", "message", "detail"}) {
      if (!j.contains(key)) continue;
      if (auto m = pick(j[key])) return one_line(*m);
      return one_line(j[key].dump());
    }
  }
  return body.empty() ? "(empty body)" : one_line(body, 200);
}

class HttpBackend final : public LlmBackend {
 public:
  explicit HttpBackend(const HttpBackendOptions& options)
      : LlmBackend(options.name), o_(options), semaphore_(options.concurrency) {
    if (!o_.base_url.starts_with("http://") && !o_.base_url.starts_with("https://")) {
      throw ConfigError("model '" + o_.name + "': base_url '" + o_.base_url +
                        "' must start with http:// or https://");
    }
    if (o_.model.empty()) throw ConfigError("model '" + o_.name + "': 'model' is empty");
    if (!o_.api_key_env.empty()) {
      const char* key = std::getenv(o_.api_key_env.c_str());
      if (key == nullptr || *key == '\0') {
        throw ConfigError("model '" + o_.name + "': the environment variable " + o_.api_key_env +
                          " (api_key_env) is not set; export the API key in it");
      }
      auth_header_ = std::string("Authorization: Bearer ") + key;
    }
    std::string base = o_.base_url;
    while (base.ends_with('/')) base.pop_back();
    url_ = base + "/chat/completions";
    curl_init_once();
  }

  ~HttpBackend() override {
    for (CURL* h : handles_) curl_easy_cleanup(h);
  }

  std::string describe() const override { return "http " + o_.model + " at " + o_.base_url; }

 protected:
  LlmResponse do_complete(const LlmRequest& request, int& attempts) override {
    const std::string body = request_body(request);
    for (int retry = 0;; ++retry) {
      if (request.cancel != nullptr && request.cancel->load()) throw_cancelled(name());
      Reply reply;
      {
        SemaphoreGuard permit(semaphore_, request.cancel);
        if (!permit.held()) throw_cancelled(name());
        ++attempts;
        post(body, request.cancel, reply);
      }
      if (reply.code == CURLE_ABORTED_BY_CALLBACK) throw_cancelled(name());
      std::string problem;
      bool retry_it = false;
      LlmErrorKind kind = LlmErrorKind::kFailed;
      int status = 0;
      if (reply.code != CURLE_OK) {
        problem = reply.code == CURLE_OPERATION_TIMEDOUT
                      ? "no complete reply within " + seconds_text(o_.timeout_s) + " (" +
                            one_line(reply.curl_error) + ")"
                  : reply.code == CURLE_WRITE_ERROR ? "the reply is larger than 64 MiB"
                                                    : one_line(reply.curl_error);
        retry_it = retryable_curl(reply.code);
        if (fatal_curl(reply.code)) kind = LlmErrorKind::kFatal;
      } else if (reply.status >= 200 && reply.status < 300) {
        return parse(reply);
      } else {
        status = static_cast<int>(reply.status);
        problem = "HTTP " + std::to_string(status) + ": " + server_message(reply.body);
        retry_it = retryable_status(status);
        kind = kind_for_status(status);
      }
      if (!retry_it) throw LlmError(kind, status, prefix() + problem);
      if (retry >= o_.max_retries) {
        throw LlmError(
            LlmErrorKind::kFailed, status,
            prefix() + problem + " (gave up after " + std::to_string(attempts) + " attempts)");
      }
      double wait = backoff(request.seed, retry);
      if (reply.retry_after_s)
        wait = std::max(wait, std::min(*reply.retry_after_s, o_.retry_after_max_s));
      if (!sleep_unless_cancelled(wait, request.cancel)) throw_cancelled(name());
    }
  }

 private:
  std::string prefix() const { return "backend '" + name() + "' (" + describe() + "): "; }

  static std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g s", s);
    return buf;
  }

  // initial * 2^retry, capped, times a factor in [0.5, 1) drawn from the two seeds.
  double backoff(uint64_t request_seed, int retry) const {
    const double base =
        std::min(o_.backoff_max_s, o_.backoff_initial_s * std::ldexp(1.0, std::min(retry, 60)));
    const double u = CounterRng(o_.seed).stream(request_seed).uniform(static_cast<uint64_t>(retry));
    return base * (0.5 + 0.5 * u);
  }

  std::string request_body(const LlmRequest& request) const {
    nlohmann::json body = {{"model", o_.model}, {"messages", nlohmann::json::array()}};
    for (const ChatMessage& m : request.messages) {
      body["messages"].push_back({{"role", m.role}, {"content", m.content}});
    }
    if (o_.temperature) body["temperature"] = *o_.temperature;
    if (o_.top_p) body["top_p"] = *o_.top_p;
    if (o_.max_tokens) body["max_tokens"] = *o_.max_tokens;
    if (!o_.stop.empty()) body["stop"] = o_.stop;
    for (const auto& [key, value] : o_.extra_body.items()) body[key] = value;
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  LlmResponse parse(const Reply& reply) const {
    const nlohmann::json j = nlohmann::json::parse(reply.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      throw LlmError(LlmErrorKind::kFailed, static_cast<int>(reply.status),
                     prefix() + "the reply is not a JSON object (HTTP " +
                         std::to_string(reply.status) + ", " + std::to_string(reply.body.size()) +
                         " bytes: " + one_line(reply.body, 80) + ")");
    }
    const auto bad = [&](const std::string& what) {
      return LlmError(LlmErrorKind::kFailed, static_cast<int>(reply.status),
                      prefix() + "the reply " + what);
    };
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) {
      if (j.contains("error")) throw bad("is an error: " + server_message(reply.body));
      throw bad("has no choices");
    }
    const nlohmann::json& choice = j["choices"][0];
    if (!choice.is_object() || !choice.contains("message") || !choice["message"].is_object()) {
      throw bad("has no choices[0].message");
    }
    const nlohmann::json& message = choice["message"];
    if (!message.contains("content") || !message["content"].is_string()) {
      if (message.contains("refusal") && message["refusal"].is_string()) {
        throw bad("is a refusal: " + one_line(message["refusal"].get<std::string>()));
      }
      throw bad("has no text in choices[0].message.content");
    }
    LlmResponse response;
    response.text = message["content"].get<std::string>();
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
      response.finish_reason = choice["finish_reason"].get<std::string>();
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const nlohmann::json& u = j["usage"];
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
        response.usage.input_tokens = u["prompt_tokens"].get<int64_t>();
      }
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer()) {
        response.usage.output_tokens = u["completion_tokens"].get<int64_t>();
      }
    }
    response.usage.cost_usd =
        o_.prices.cost(response.usage.input_tokens, response.usage.output_tokens);
    return response;
  }

  void post(const std::string& body, const std::atomic<bool>* cancel, Reply& reply) {
    CURL* h = take_handle();
    char error[CURL_ERROR_SIZE] = {0};
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    if (!auth_header_.empty()) headers = curl_slist_append(headers, auth_header_.c_str());
    curl_easy_setopt(h, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "shoal/0.1");
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM-based DNS timeouts
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::ceil(o_.connect_timeout_s * 1000)));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(std::ceil(o_.timeout_s * 1000)));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &reply);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(cancel));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    reply.code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply.status);
    reply.curl_error = error[0] != '\0' ? error : curl_easy_strerror(reply.code);
    curl_slist_free_all(headers);
    give_handle(h);
  }

  CURL* take_handle() {
    {
      std::lock_guard lock(handles_mutex_);
      if (!handles_.empty()) {
        CURL* h = handles_.back();
        handles_.pop_back();
        curl_easy_reset(h);  // keeps the connection cache
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (h == nullptr) throw LlmError(LlmErrorKind::kFailed, 0, prefix() + "curl_easy_init failed");
    return h;
  }

  void give_handle(CURL* h) {
    std::lock_guard lock(handles_mutex_);
    handles_.push_back(h);
  }

  HttpBackendOptions o_;
  std::string auth_header_;
  std::string url_;
  Semaphore semaphore_;
  std::mutex handles_mutex_;
  std::vector<CURL*> handles_;
};

}  // namespace
}  // namespace shoal::search

namespace shoal {

std::unique_ptr<LlmBackend> make_http_backend(const HttpBackendOptions& options) {
  return std::make_unique<search::HttpBackend>(options);
}

}  // namespace shoal
