// The mock backend (scripted, seeded) and the engine backend on a real trained model
// (stories260K, whose greedy continuations llama.cpp recorded in shared/data).
#include <atomic>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "shoal/llm.h"

namespace shoal {
namespace {

LlmRequest user(const std::string& text, uint64_t seed = 0) {
  LlmRequest r;
  r.messages = {{"user", text}};
  r.seed = seed;
  return r;
}

TEST(MockBackend, PicksAnswersBySeed) {
  MockBackendOptions o;
  o.name = "m";
  o.answers = {"alpha {n}", "beta {n}", "gamma {n}"};
  o.prices = {1.0, 2.0};
  const auto a = make_mock_backend(o);
  const auto b = make_mock_backend(o);
  std::set<std::string> firsts;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    const LlmResponse ra = a->complete(user("question", seed));
    EXPECT_EQ(ra.text, b->complete(user("question", seed)).text) << "seed " << seed;
    firsts.insert(ra.text.substr(0, ra.text.find(' ')));
    const int n = std::stoi(ra.text.substr(ra.text.find(' ') + 1));
    EXPECT_GE(n, 0);
    EXPECT_LT(n, 1000);
  }
  EXPECT_EQ(firsts, (std::set<std::string>{"alpha", "beta", "gamma"}));

  // Tokens are ceil(bytes / 4): "question" is 8 bytes -> 2; "alpha 123" (9) -> 3.
  MockBackendOptions one;
  one.name = "one";
  one.answers = {"call {call}!"};
  one.prices = {1.0, 2.0};
  const auto c = make_mock_backend(one);
  const LlmResponse r0 = c->complete(user("question"));
  EXPECT_EQ(r0.text, "call 0!");
  EXPECT_EQ(r0.usage.input_tokens, 2);
  EXPECT_EQ(r0.usage.output_tokens, 2);
  EXPECT_DOUBLE_EQ(r0.usage.cost_usd, (2 * 1.0 + 2 * 2.0) / 1e6);
  EXPECT_EQ(c->complete(user("question")).text, "call 1!");
  EXPECT_EQ(c->totals().calls, 2);
}

TEST(MockBackend, ScriptedErrorsAndBadScripts) {
  MockBackendOptions o;
  o.name = "m";
  o.answers = {"!error 401 bad key"};
  try {
    make_mock_backend(o)->complete(user("x"));
    ADD_FAILURE() << "no error";
  } catch (const LlmError& e) {
    EXPECT_EQ(e.kind(), LlmErrorKind::kFatal);
    EXPECT_EQ(e.http_status(), 401);
    EXPECT_EQ(std::string(e.what()), "backend 'm' (mock): HTTP 401: bad key");
  }
  o.answers = {"!error 503"};
  const auto failing = make_mock_backend(o);
  try {
    failing->complete(user("x"));
    ADD_FAILURE() << "no error";
  } catch (const LlmError& e) {
    EXPECT_EQ(e.kind(), LlmErrorKind::kFailed);
    EXPECT_EQ(std::string(e.what()), "backend 'm' (mock): HTTP 503: scripted error");
  }
  EXPECT_EQ(failing->totals().failures, 1);

  o.answers = {};
  EXPECT_THROW(make_mock_backend(o), ConfigError);
  o.answers = {"!error soon"};
  EXPECT_THROW(make_mock_backend(o), ConfigError);
}

TEST(MockBackend, LatencyIsCancellable) {
  MockBackendOptions o;
  o.name = "slow";
  o.answers = {"done"};
  o.latency_s = 30;
  const auto backend = make_mock_backend(o);
  std::atomic<bool> cancel{false};
  LlmRequest r = user("x");
  r.cancel = &cancel;
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancel.store(true);
  });
  try {
    backend->complete(r);
    ADD_FAILURE() << "no error";
  } catch (const LlmError& e) {
    EXPECT_EQ(e.kind(), LlmErrorKind::kCancelled);
  }
  setter.join();
  EXPECT_EQ(backend->totals().calls, 0);
}

std::filesystem::path stories() {
  const auto path = test::shared_data_dir() / "stories260k" / "stories260K.gguf";
  EXPECT_TRUE(std::filesystem::exists(path))
      << path << " is missing: set SHOAL_SHARED_DATA to the folder holding stories260k/";
  return path;
}

TEST(EngineBackend, GreedyMatchesLlamaCpp) {
  EngineBackendOptions o;
  o.name = "tiny";
  o.model = stories();
  o.max_tokens = 32;
  o.threads = 1;
  const auto backend = make_engine_backend(o);
  const LlmResponse r = backend->complete(user("Once upon a time"));
  // llama.cpp's greedy continuation (shared/data/stories260k/llamacpp_oracle.jsonl); the GGUF
  // has no chat template, so the message goes in as plain text after BOS: 1 + 4 tokens.
  EXPECT_EQ(r.text,
            ", there was a little girl named Lily. She loved to play outside in the park. One "
            "day, she saw");
  EXPECT_EQ(r.usage.input_tokens, 5);
  EXPECT_EQ(r.usage.output_tokens, 32);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.usage.cost_usd, 0.0);
}

TEST(EngineBackend, StopStringsAndSeededSampling) {
  EngineBackendOptions o;
  o.name = "tiny";
  o.model = stories();
  o.max_tokens = 32;
  o.threads = 1;
  o.stop = {"Lily"};
  const auto greedy = make_engine_backend(o);
  const LlmResponse r = greedy->complete(user("Once upon a time"));
  EXPECT_EQ(r.text, ", there was a little girl named ");
  EXPECT_EQ(r.finish_reason, "stop");

  o.stop.clear();
  o.temperature = 1.0f;
  const auto sampled = make_engine_backend(o);
  std::set<std::string> texts;
  for (uint64_t seed : {1, 2, 3}) {
    const std::string a = sampled->complete(user("Once upon a time", seed)).text;
    EXPECT_EQ(a, sampled->complete(user("Once upon a time", seed)).text) << "seed " << seed;
    texts.insert(a);
  }
  EXPECT_GT(texts.size(), 1u);  // different seeds, different stories
  EXPECT_EQ(sampled->totals().calls, 6);
}

}  // namespace
}  // namespace shoal
