#include "shoal/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "shoal/error.h"

namespace shoal {
namespace {

// Larger logit first; the lower id on ties. NaN counts as -inf.
struct ByLogit {
  std::span<const float> logits;
  float key(int32_t i) const {
    const float v = logits[static_cast<size_t>(i)];
    return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
  }
  bool operator()(int32_t a, int32_t b) const {
    const float x = key(a), y = key(b);
    return x > y || (x == y && a < b);
  }
};

double log_sum_exp(std::span<const float> logits, float mx) {
  double sum = 0.0;
  for (const float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  return static_cast<double>(mx) + std::log(sum);
}

float max_of(std::span<const float> logits) {
  float mx = -std::numeric_limits<float>::infinity();
  for (const float v : logits) mx = std::max(mx, v);
  return mx;
}

}  // namespace

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  bool found = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    if (!found || logits[i] > logits[static_cast<size_t>(best)]) {
      best = static_cast<int32_t>(i);
      found = true;
    }
  }
  return best;
}

void log_softmax(std::span<const float> logits, std::span<float> out) {
  SHOAL_ASSERT(out.size() == logits.size());
  if (logits.empty()) return;
  const double lse = log_sum_exp(logits, max_of(logits));
  for (size_t i = 0; i < logits.size(); ++i) {
    out[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
  }
}

std::vector<float> log_softmax(std::span<const float> logits) {
  std::vector<float> out(logits.size());
  log_softmax(logits, out);
  return out;
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int k) {
  const size_t n = std::min(logits.size(), static_cast<size_t>(std::max(k, 0)));
  if (n == 0) return {};
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(n), ids.end(),
                    ByLogit{logits});
  const double lse = log_sum_exp(logits, max_of(logits));
  std::vector<TokenLogprob> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = {ids[i],
              static_cast<float>(static_cast<double>(logits[static_cast<size_t>(ids[i])]) - lse)};
  }
  return out;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  if (params.top_k < 0) {
    throw ConfigError("sampling: top_k must be >= 0, got " + std::to_string(params.top_k));
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    throw ConfigError("sampling: top_p must be in (0, 1], got " + std::to_string(params.top_p));
  }
}

int32_t Sampler::sample(std::span<const float> logits) {
  const uint64_t draw = draws_++;
  SHOAL_ASSERT(!logits.empty());
  if (params_.temperature <= 0.0f || params_.top_k == 1) return argmax(logits);

  // Candidates: the top k by logit (sorted), every token sorted when top-p needs the order, or
  // every token in id order when neither filter is on.
  const size_t n = logits.size();
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), 0);
  size_t kept = n;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    kept = static_cast<size_t>(params_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + static_cast<ptrdiff_t>(kept), order_.end(),
                      ByLogit{logits});
  } else if (params_.top_p < 1.0f) {
    std::sort(order_.begin(), order_.end(), ByLogit{logits});
  }

  // Softmax of logits / temperature over the candidates, in double.
  const double inv_t = 1.0 / static_cast<double>(params_.temperature);
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < kept; ++i) {
    const float v = logits[static_cast<size_t>(order_[i])];
    if (!std::isnan(v)) mx = std::max(mx, static_cast<double>(v) * inv_t);
  }
  probs_.resize(kept);
  double total = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    const float v = logits[static_cast<size_t>(order_[i])];
    probs_[i] = std::isnan(v) ? 0.0 : std::exp(static_cast<double>(v) * inv_t - mx);
    total += probs_[i];
  }
  if (params_.top_p < 1.0f) {
    // Keep tokens while the mass before them is below top_p (at least one).
    double before = 0.0;
    size_t keep = 0;
    while (keep < kept && (keep == 0 || before < params_.top_p * total)) before += probs_[keep++];
    kept = keep;
    total = before;
  }
  const double target = rng_.uniform(draw) * total;
  double cum = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    cum += probs_[i];
    if (target < cum) return order_[i];
  }
  // Rounding left target at the very top: the last candidate with mass.
  for (size_t i = kept; i-- > 0;) {
    if (probs_[i] > 0.0) return order_[i];
  }
  return order_[0];
}

}  // namespace shoal
