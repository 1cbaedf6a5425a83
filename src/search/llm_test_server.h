// A mock OpenAI-compatible chat-completions server for the search tests (cpp-httplib), on
// 127.0.0.1 at a free port. It answers deterministically, and the last user message picks a
// misbehaviour, so one server covers every case:
//   "fail:429x2 ..."      429 for the first 2 requests with this text (Retry-After: 1 on the
//                          first, retry-after-ms: 50 on the others), then a normal answer
//   "fail:500x1 ..."      500 once, then normal; "fail:500xall" always 500
//   "fail:slowx1 ..."     the first request sleeps 1.5 s before answering (a client timeout),
//                          then normal; "fail:slowxall" always slow
//   "fail:400", "fail:404", "fail:401"  that status, with an OpenAI-style error body
//   "fail:malformed"      HTTP 200 with a body that is not JSON
//   "fail:refusal"        HTTP 200 with content null and a refusal
//   "fail:busy ..."       sleeps 100 ms, then normal (to count requests in flight)
//   anything else         normal: "echo: <text>"
// A request without "Authorization: Bearer <key>" gets 401. Normal answers report
// prompt_tokens = bytes of all message contents and completion_tokens = bytes of the answer.
// Test-only; header-only.
#pragma once

// The macros Debian built libcpp-httplib with (pkg-config --cflags cpp-httplib): class layouts
// in httplib.h depend on them, so every user must see the same ones.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal::test {

class MockOpenAiServer {
 public:
  explicit MockOpenAiServer(std::string key = "test-key-123") : key_(std::move(key)) {
    server_.set_keep_alive_timeout(1);
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~MockOpenAiServer() {
    server_.stop();
    thread_.join();
  }
  MockOpenAiServer(const MockOpenAiServer&) = delete;
  MockOpenAiServer& operator=(const MockOpenAiServer&) = delete;

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int port() const { return port_; }

  // Requests whose last user message was `text`, and when each one arrived.
  int requests(const std::string& text) const {
    std::lock_guard lock(mutex_);
    const auto it = arrivals_.find(text);
    return it == arrivals_.end() ? 0 : static_cast<int>(it->second.size());
  }
  std::vector<std::chrono::steady_clock::time_point> arrivals(const std::string& text) const {
    std::lock_guard lock(mutex_);
    const auto it = arrivals_.find(text);
    return it == arrivals_.end() ? std::vector<std::chrono::steady_clock::time_point>{}
                                 : it->second;
  }
  nlohmann::json last_body() const {
    std::lock_guard lock(mutex_);
    return last_body_;
  }
  int max_in_flight() const {
    std::lock_guard lock(mutex_);
    return max_in_flight_;
  }

 private:
  static void error(httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(nlohmann::json{{"error", {{"message", message}, {"type", "test"}}}}.dump(),
                    "application/json");
  }

  // "fail:429x2 rest" -> ("429", 2); "fail:500xall" -> ("500", -1); "fail:400" -> ("400", -1).
  static std::pair<std::string, int> script(const std::string& text) {
    if (!text.starts_with("fail:")) return {"", 0};
    std::string word = text.substr(
        5, text.find(' ') == std::string::npos ? std::string::npos : text.find(' ') - 5);
    const size_t x = word.find('x');
    if (x == std::string::npos) return {word, -1};
    const std::string times = word.substr(x + 1);
    return {word.substr(0, x), times == "all" ? -1 : std::stoi(times)};
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    std::string text;
    size_t prompt_bytes = 0;
    if (body.is_object() && body.contains("messages")) {
      for (const auto& m : body["messages"]) {
        prompt_bytes += m["content"].get<std::string>().size();
        if (m["role"] == "user") text = m["content"].get<std::string>();
      }
    }
    int seen = 0;
    {
      std::lock_guard lock(mutex_);
      auto& list = arrivals_[text];
      list.push_back(std::chrono::steady_clock::now());
      seen = static_cast<int>(list.size());  // this request's number, from 1
      last_body_ = body;
      max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    }
    respond(req, res, text, prompt_bytes, seen);
    std::lock_guard lock(mutex_);
    --in_flight_;
  }

  void respond(const httplib::Request& req, httplib::Response& res, const std::string& text,
               size_t prompt_bytes, int seen) {
    if (req.get_header_value("Authorization") != "Bearer " + key_) {
      return error(res, 401, "Incorrect API key provided");
    }
    const auto [what, times] = script(text);
    const bool misbehave = !what.empty() && (times < 0 || seen <= times);
    if (misbehave) {
      if (what == "429") {
        if (seen == 1) {
          res.set_header("Retry-After", "1");
        } else {
          res.set_header("retry-after-ms", "50");
        }
        return error(res, 429, "Rate limit reached");
      }
      if (what == "500") return error(res, 500, "upstream exploded");
      if (what == "400") return error(res, 400, "max_tokens is too large");
      if (what == "404") return error(res, 404, "The model 'nope' does not exist");
      if (what == "401") return error(res, 401, "Incorrect API key provided");
      if (what == "malformed") {
        res.set_content("{\"choices\": [{\"message\": ", "application/json");
        return;
      }
      if (what == "refusal") {
        res.set_content(R"({"choices":[{"message":{"role":"assistant","content":null,)"
                        R"("refusal":"I can't help with that"},"finish_reason":"stop"}]})",
                        "application/json");
        return;
      }
      if (what == "slow") std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    }
    if (what == "busy") std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string answer = "echo: " + text;
    const nlohmann::json reply = {{"id", "chatcmpl-test"},
                                  {"object", "chat.completion"},
                                  {"choices",
                                   {{{"index", 0},
                                     {"message", {{"role", "assistant"}, {"content", answer}}},
                                     {"finish_reason", "stop"}}}},
                                  {"usage",
                                   {{"prompt_tokens", prompt_bytes},
                                    {"completion_tokens", answer.size()},
                                    {"total_tokens", prompt_bytes + answer.size()}}}};
    res.set_content(reply.dump(), "application/json");
  }

  std::string key_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<std::chrono::steady_clock::time_point>> arrivals_;
  nlohmann::json last_body_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
};

}  // namespace shoal::test
