// The HTTP backend against a mock OpenAI-compatible server (llm_test_server.h): the request it
// sends, usage and cost, retries where they make sense (429 with Retry-After, 5xx, timeouts,
// refused connections), none where they do not (400, 401, 404, malformed JSON), the concurrency
// limit and cancellation.
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "search/llm_test_server.h"
#include "shoal/llm.h"

namespace shoal {
namespace {

using std::chrono::duration;
using std::chrono::steady_clock;

class HttpBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("SHOAL_TEST_API_KEY", "test-key-123", 1); }

  HttpBackendOptions options() const {
    HttpBackendOptions o;
    o.name = "test";
    o.base_url = server_.base_url();
    o.model = "mock-model";
    o.api_key_env = "SHOAL_TEST_API_KEY";
    o.backoff_initial_s = 0.01;
    o.backoff_max_s = 0.05;
    o.timeout_s = 5;
    o.max_retries = 3;
    return o;
  }

  static LlmRequest request(const std::string& text) {
    LlmRequest r;
    r.messages = {{"system", "be brief"}, {"user", text}};
    r.seed = 7;
    return r;
  }

  // The LlmError a call throws (fails the test when it does not throw one).
  static LlmError error_of(LlmBackend& backend, const LlmRequest& r) {
    try {
      backend.complete(r);
    } catch (const LlmError& e) {
      return e;
    }
    ADD_FAILURE() << "the call did not fail";
    return LlmError(LlmErrorKind::kFailed, 0, "");
  }

  test::MockOpenAiServer server_;
};

TEST_F(HttpBackendTest, SendsTheRequestAndAccountsTokensAndCost) {
  HttpBackendOptions o = options();
  o.temperature = 0.7;
  o.max_tokens = 64;
  o.stop = {"\n\n", "END"};
  o.extra_body = {{"seed", 3}, {"temperature", 0.5}};  // extra_body wins over temperature
  o.prices = {2.5, 10.0};
  const auto backend = make_http_backend(o);
  const LlmResponse r = backend->complete(request("hello there"));
  EXPECT_EQ(r.text, "echo: hello there");
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.attempts, 1);
  // prompt: "be brief" (8 bytes) + "hello there" (11) = 19; completion: 17 bytes.
  EXPECT_EQ(r.usage.input_tokens, 19);
  EXPECT_EQ(r.usage.output_tokens, 17);
  EXPECT_DOUBLE_EQ(r.usage.cost_usd, (19 * 2.5 + 17 * 10.0) / 1e6);

  const nlohmann::json body = server_.last_body();
  EXPECT_EQ(body["model"], "mock-model");
  EXPECT_EQ(body["max_tokens"], 64);
  EXPECT_EQ(body["temperature"], 0.5);
  EXPECT_EQ(body["seed"], 3);
  EXPECT_EQ(body["stop"], nlohmann::json::array({"\n\n", "END"}));
  EXPECT_EQ(body["messages"], nlohmann::json::parse(R"([{"role":"system","content":"be brief"},
                                                        {"role":"user","content":"hello there"}])"));

  backend->complete(request("again"));
  const LlmTotals t = backend->totals();
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(t.failures, 0);
  EXPECT_EQ(t.attempts, 2);
  EXPECT_EQ(t.input_tokens, 19 + 13);
  EXPECT_EQ(t.output_tokens, 17 + 11);
  EXPECT_DOUBLE_EQ(t.cost_usd, ((19 + 13) * 2.5 + (17 + 11) * 10.0) / 1e6);
}

TEST_F(HttpBackendTest, RetriesA429AfterRetryAfter) {
  const auto backend = make_http_backend(options());
  const std::string text = "fail:429x2 please";
  const LlmResponse r = backend->complete(request(text));
  EXPECT_EQ(r.text, "echo: " + text);
  EXPECT_EQ(r.attempts, 3);
  const auto at = server_.arrivals(text);
  ASSERT_EQ(at.size(), 3u);
  // Retry-After: 1 on the first 429 (the backoff alone would wait at most 10 ms), then
  // retry-after-ms: 50.
  EXPECT_GE(duration<double>(at[1] - at[0]).count(), 0.95);
  EXPECT_GE(duration<double>(at[2] - at[1]).count(), 0.045);
  EXPECT_LT(duration<double>(at[2] - at[1]).count(), 0.9);
  EXPECT_EQ(backend->totals().attempts, 3);
  EXPECT_EQ(backend->totals().calls, 1);
}

TEST_F(HttpBackendTest, Retries5xxThenGivesUpWithTheServersMessage) {
  const auto backend = make_http_backend(options());
  EXPECT_EQ(backend->complete(request("fail:500x1 once")).attempts, 2);

  const std::string text = "fail:500xall";
  const LlmError e = error_of(*backend, request(text));
  EXPECT_EQ(e.kind(), LlmErrorKind::kFailed);
  EXPECT_EQ(e.http_status(), 500);
  EXPECT_EQ(std::string(e.what()), "backend 'test' (http mock-model at " + server_.base_url() +
                                       "): HTTP 500: upstream exploded (gave up after 4 attempts)");
  EXPECT_EQ(server_.requests(text), 4);  // 1 + max_retries
  const auto at = server_.arrivals(text);
  for (size_t i = 1; i < at.size(); ++i) {
    // The wait before retry r is in [0.5, 1) x min(0.05, 0.01 * 2^r).
    const double base = std::min(0.05, 0.01 * (1 << (i - 1)));
    EXPECT_GE(duration<double>(at[i] - at[i - 1]).count(), 0.5 * base - 1e-3) << i;
  }
  const LlmTotals t = backend->totals();
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(t.failures, 1);
  EXPECT_EQ(t.attempts, 2 + 4);
}

TEST_F(HttpBackendTest, RetriesATimeoutAndReportsOneThatPersists) {
  HttpBackendOptions o = options();
  o.timeout_s = 0.3;
  o.max_retries = 1;
  const auto backend = make_http_backend(o);
  const auto start = steady_clock::now();
  const LlmResponse r = backend->complete(request("fail:slowx1 late"));
  EXPECT_EQ(r.attempts, 2);
  EXPECT_LT(duration<double>(steady_clock::now() - start).count(), 1.4);  // did not wait 1.5 s

  const LlmError e = error_of(*backend, request("fail:slowxall"));
  EXPECT_EQ(e.kind(), LlmErrorKind::kFailed);
  EXPECT_EQ(e.http_status(), 0);
  const std::string what = e.what();
  EXPECT_NE(what.find("no complete reply within 0.3 s"), std::string::npos) << what;
  EXPECT_NE(what.find("gave up after 2 attempts"), std::string::npos) << what;
}

TEST_F(HttpBackendTest, DoesNotRetryClientErrors) {
  const auto backend = make_http_backend(options());
  struct Case {
    std::string text;
    LlmErrorKind kind;
    int status;
    std::string message;
  };
  const std::string prefix = "backend 'test' (http mock-model at " + server_.base_url() + "): ";
  for (const Case& c : std::vector<Case>{
           {"fail:400", LlmErrorKind::kFailed, 400, "HTTP 400: max_tokens is too large"},
           {"fail:404", LlmErrorKind::kFatal, 404, "HTTP 404: The model 'nope' does not exist"},
           {"fail:401", LlmErrorKind::kFatal, 401, "HTTP 401: Incorrect API key provided"},
           {"fail:refusal", LlmErrorKind::kFailed, 200,
            "the reply is a refusal: I can't help with that"},
       }) {
    const LlmError e = error_of(*backend, request(c.text));
    EXPECT_EQ(e.kind(), c.kind) << c.text;
    EXPECT_EQ(e.http_status(), c.status) << c.text;
    EXPECT_EQ(std::string(e.what()), prefix + c.message);
    EXPECT_EQ(server_.requests(c.text), 1) << c.text;
  }
  const LlmError e = error_of(*backend, request("fail:malformed"));
  EXPECT_EQ(e.kind(), LlmErrorKind::kFailed);
  EXPECT_EQ(std::string(e.what()), prefix +
                                       "the reply is not a JSON object (HTTP 200, 25 bytes: "
                                       "{\"choices\": [{\"message\":)");
  EXPECT_EQ(server_.requests("fail:malformed"), 1);
}

TEST_F(HttpBackendTest, AWrongKeyIsFatalAndAMissingOneIsAConfigError) {
  ::setenv("SHOAL_TEST_API_KEY", "sk-wrong", 1);
  const auto backend = make_http_backend(options());
  const LlmError e = error_of(*backend, request("hello"));
  EXPECT_EQ(e.kind(), LlmErrorKind::kFatal);
  EXPECT_EQ(e.http_status(), 401);
  EXPECT_EQ(server_.requests("hello"), 1);

  HttpBackendOptions o = options();
  o.api_key_env = "SHOAL_TEST_NO_SUCH_KEY";
  ::unsetenv("SHOAL_TEST_NO_SUCH_KEY");
  try {
    make_http_backend(o);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "model 'test': the environment variable SHOAL_TEST_NO_SUCH_KEY (api_key_env) is not "
              "set; export the API key in it");
  }
  o = options();
  o.base_url = "ftp://example.com";
  EXPECT_THROW(make_http_backend(o), ConfigError);
}

TEST_F(HttpBackendTest, RetriesARefusedConnection) {
  HttpBackendOptions o = options();
  o.base_url = "http://127.0.0.1:1/v1";  // nothing listens on port 1
  o.max_retries = 2;
  const auto backend = make_http_backend(o);
  const LlmError e = error_of(*backend, request("hello"));
  EXPECT_EQ(e.kind(), LlmErrorKind::kFailed);
  EXPECT_NE(std::string(e.what()).find("gave up after 3 attempts"), std::string::npos) << e.what();
  EXPECT_EQ(backend->totals().attempts, 3);
}

TEST_F(HttpBackendTest, KeepsToItsConcurrencyLimit) {
  HttpBackendOptions o = options();
  o.concurrency = 2;
  const auto backend = make_http_backend(o);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      if (backend->complete(request("fail:busy " + std::to_string(i))).text.starts_with("echo"))
        ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(server_.max_in_flight(), 2);
}

TEST_F(HttpBackendTest, CancelStopsACallInFlight) {
  const auto backend = make_http_backend(options());
  std::atomic<bool> cancel{false};
  LlmRequest r = request("fail:slowxall");
  r.cancel = &cancel;
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cancel.store(true);
  });
  const auto start = steady_clock::now();
  const LlmError e = error_of(*backend, r);
  setter.join();
  EXPECT_EQ(e.kind(), LlmErrorKind::kCancelled);
  EXPECT_LT(duration<double>(steady_clock::now() - start).count(), 1.0);
  EXPECT_EQ(backend->totals().calls, 0);  // a cancelled call is not counted
}

}  // namespace
}  // namespace shoal
