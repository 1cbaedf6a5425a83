// The mock backend: answers picked from a script by the request's seed, so a search over it is
// reproducible without a network or a model. "!error STATUS message" answers fail the call as an
// HTTP backend would for that status.
#include <atomic>
#include <charconv>
#include <string>

#include "search/llm_common.h"
#include "shoal/llm.h"
#include "shoal/rng.h"

namespace shoal::search {
namespace {

int64_t approx_tokens(size_t bytes) {
  return static_cast<int64_t>((bytes + 3) / 4);
}

void replace_all(std::string& s, std::string_view from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

class MockBackend final : public LlmBackend {
 public:
  explicit MockBackend(const MockBackendOptions& options) : LlmBackend(options.name), o_(options) {
    if (o_.answers.empty()) {
      throw ConfigError("model '" + o_.name + "': a mock backend needs a non-empty 'answers' list");
    }
    for (const std::string& a : o_.answers) {
      if (!a.starts_with("!error")) continue;
      int status = 0;
      const char* begin = a.data() + 6;
      while (begin < a.data() + a.size() && *begin == ' ') ++begin;
      const auto [end, ec] = std::from_chars(begin, a.data() + a.size(), status);
      if (ec != std::errc() || status < 100 || status > 599) {
        throw ConfigError("model '" + o_.name + "': mock answer '" + one_line(a, 60) +
                          "' must be '!error STATUS [message]' with an HTTP status");
      }
      (void)end;
    }
  }

  std::string describe() const override {
    return "mock (" + std::to_string(o_.answers.size()) + " answers)";
  }

 protected:
  LlmResponse do_complete(const LlmRequest& request, int& attempts) override {
    attempts = 1;
    const int64_t call = calls_.fetch_add(1);
    if (o_.latency_s > 0 && !sleep_unless_cancelled(o_.latency_s, request.cancel)) {
      throw_cancelled(name());
    }
    const CounterRng rng(request.seed);
    std::string answer = o_.answers[rng.bits(0) % o_.answers.size()];
    if (answer.starts_with("!error")) {
      const size_t digits = answer.find_first_of("0123456789");
      const size_t end = answer.find(' ', digits);
      const int status = std::stoi(answer.substr(digits, end - digits));
      const std::string message =
          end == std::string::npos ? "scripted error" : answer.substr(end + 1);
      throw LlmError(
          kind_for_status(status), status,
          "backend '" + name() + "' (mock): HTTP " + std::to_string(status) + ": " + message);
    }
    replace_all(answer, "{n}", std::to_string(rng.bits(1) % 1000));
    replace_all(answer, "{call}", std::to_string(call));
    LlmResponse response;
    response.text = std::move(answer);
    response.finish_reason = "stop";
    size_t prompt_bytes = 0;
    for (const ChatMessage& m : request.messages) prompt_bytes += m.content.size();
    response.usage.input_tokens = approx_tokens(prompt_bytes);
    response.usage.output_tokens = approx_tokens(response.text.size());
    response.usage.cost_usd =
        o_.prices.cost(response.usage.input_tokens, response.usage.output_tokens);
    return response;
  }

 private:
  MockBackendOptions o_;
  std::atomic<int64_t> calls_{0};
};

}  // namespace
}  // namespace shoal::search

namespace shoal {

std::unique_ptr<LlmBackend> make_mock_backend(const MockBackendOptions& options) {
  return std::make_unique<search::MockBackend>(options);
}

}  // namespace shoal
