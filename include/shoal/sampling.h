// Choosing the next token from logits, and log-probability helpers. Implemented in
// src/infer/sampling.cpp.
//
// Sampling follows Hugging Face's warper order: logits / temperature, then top-k, then top-p
// (keep the most probable tokens, in descending order, while the probability mass before a
// token is below top_p; at least one token is kept), then one draw from the renormalised
// distribution. Draw i of a Sampler uses CounterRng(seed).uniform(i), so a seed fixes the tokens.
// Ties between equal logits go to the lower token id everywhere (argmax, top-k, top-p).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "shoal/rng.h"

namespace shoal {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax)
  int top_k = 0;             // 0: off; 1: greedy
  float top_p = 1.0f;        // 1: off; in (0, 1]
  uint64_t seed = 0;
};

// Index of the largest logit (the lowest such index on ties; NaN never wins).
int32_t argmax(std::span<const float> logits);

// out[i] = logits[i] - log(sum_j exp(logits[j])), computed with the max subtracted and the sum
// in double. out may alias logits.
void log_softmax(std::span<const float> logits, std::span<float> out);
std::vector<float> log_softmax(std::span<const float> logits);

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
};
// The k most probable tokens with their log-probabilities, most probable first.
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int k);

// Stateful only through its draw counter: sample() number i uses uniform(i) of the seed's stream.
// Not thread-safe (one Sampler per stream).
class Sampler {
 public:
  // Throws ConfigError for top_k < 0, or top_p outside (0, 1].
  explicit Sampler(const SamplingParams& params);
  int32_t sample(std::span<const float> logits);
  const SamplingParams& params() const { return params_; }
  uint64_t draws() const { return draws_; }

 private:
  SamplingParams params_;
  CounterRng rng_;
  uint64_t draws_ = 0;
  std::vector<int32_t> order_;  // scratch: candidate ids
  std::vector<double> probs_;   // scratch: their probabilities
};

}  // namespace shoal
