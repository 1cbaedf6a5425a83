// Helpers for the eval unit tests: scratch folders, and a deterministic fake model whose scores
// are simple enough to compute by hand in each test.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/test_support.h"

#include "shoal/eval.h"

namespace shoal::test {

// Tokens are bytes (id = byte value); BOS is id 256. The "model" is a bigram rule:
//   ln p(t | previous token) = -0.5 if t repeats the previous token, else -1.
// The most likely next token is always a repeat, so a continuation is greedy when every token
// repeats the one before it. Generation answers from `replies`, keyed by the decoded prompt.
class FakeBackend : public EvalBackend {
 public:
  static constexpr int32_t kBos = 256;

  bool has_bos = true;
  int context = 64;
  std::map<std::string, std::string> replies;
  // Every call, as received.
  std::vector<std::vector<LoglikelihoodRequest>> ll_calls;
  std::vector<std::vector<GenerationRequest>> gen_calls;

  static double token_logprob(int32_t previous, int32_t token) {
    return token == previous ? -0.5 : -1.0;
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) override {
    std::vector<int32_t> ids;
    if (add_bos && has_bos) ids.push_back(kBos);
    for (char c : text) ids.push_back(static_cast<unsigned char>(c));
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) override {
    std::string out;
    for (int32_t id : ids)
      out += id == kBos ? std::string("<s>") : std::string(1, static_cast<char>(id));
    return out;
  }

  std::vector<LoglikelihoodResult> loglikelihood(
      std::span<const LoglikelihoodRequest> requests) override {
    ll_calls.emplace_back(requests.begin(), requests.end());
    std::vector<LoglikelihoodResult> out;
    for (const LoglikelihoodRequest& r : requests) {
      EXPECT_FALSE(r.context.empty());
      EXPECT_FALSE(r.continuation.empty());
      EXPECT_LE(r.context.size() + r.continuation.size() - 1, static_cast<size_t>(context));
      LoglikelihoodResult res{0, true};
      int32_t previous = r.context.back();
      for (int32_t t : r.continuation) {
        res.logprob += token_logprob(previous, t);
        res.greedy = res.greedy && t == previous;
        previous = t;
      }
      out.push_back(res);
    }
    return out;
  }

  std::vector<std::string> generate(std::span<const GenerationRequest> requests) override {
    gen_calls.emplace_back(requests.begin(), requests.end());
    std::vector<std::string> out;
    for (const GenerationRequest& r : requests) {
      EXPECT_LE(r.prompt.size() + static_cast<size_t>(r.max_tokens), static_cast<size_t>(context));
      const auto it = replies.find(decode(r.prompt));
      out.push_back(it == replies.end() ? "" : it->second);
    }
    return out;
  }

  int context_length() const override { return context; }
};

}  // namespace shoal::test
