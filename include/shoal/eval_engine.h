// The evaluator on shoal's own engine: an EvalBackend over a Model and its Tokenizer, and
// score(), the call `shoal evolve` makes for each candidate (weights from a folder, a GGUF file
// or memory; no disk round trip). Implemented in src/eval/engine_backend.cpp.
#pragma once

#include <span>

#include "shoal/eval.h"
#include "shoal/model.h"
#include "shoal/tokenizer.h"

namespace shoal {

// Log-likelihoods come from one batched Model::logits call per evaluator batch; generation is
// greedy, all requests of a batch decoded together (Model::extend), stopping at the tokenizer's
// stop ids, at max_tokens or once a stop string appears. Holds references: the model and
// tokenizer must outlive it.
class EngineBackend : public EvalBackend {
 public:
  // context_length 0: the model's max_position_embeddings (2048 when the config has none).
  EngineBackend(const Model& model, const Tokenizer& tokenizer, int context_length = 0);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) override;
  std::string decode(std::span<const int32_t> ids) override;
  std::vector<LoglikelihoodResult> loglikelihood(
      std::span<const LoglikelihoodRequest> requests) override;
  std::vector<std::string> generate(std::span<const GenerationRequest> requests) override;
  int context_length() const override { return context_length_; }

 private:
  const Model& model_;
  const Tokenizer& tokenizer_;
  int context_length_;
};

// Evaluates `tasks` on a model: the library call behind `shoal eval` and evolution's fitness.
EvalResult score(const Model& model, const Tokenizer& tokenizer, std::span<const TaskSpec> tasks,
                 const EvalOptions& options = {});

}  // namespace shoal
