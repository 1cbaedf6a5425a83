#include <algorithm>

#include "shoal/eval_engine.h"
#include "shoal/sampling.h"

namespace shoal {

EngineBackend::EngineBackend(const Model& model, const Tokenizer& tokenizer, int context_length)
    : model_(model), tokenizer_(tokenizer), context_length_(context_length) {
  if (context_length_ <= 0) {
    const int64_t max_pos = model.config().max_position_embeddings;
    context_length_ = max_pos > 0 ? static_cast<int>(std::min<int64_t>(max_pos, 1 << 20)) : 2048;
  }
}

std::vector<int32_t> EngineBackend::encode(std::string_view text, bool add_bos) {
  std::vector<int32_t> ids;
  if (add_bos && tokenizer_.bos_id() >= 0) ids.push_back(tokenizer_.bos_id());
  const auto body = tokenizer_.encode(text, /*add_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string EngineBackend::decode(std::span<const int32_t> ids) {
  return tokenizer_.decode(ids, /*skip_special=*/true);
}

// The model reads context ++ continuation minus its last token; the logits at the positions of
// the context's last token and every continuation token but the last predict the continuation.
std::vector<LoglikelihoodResult> EngineBackend::loglikelihood(
    std::span<const LoglikelihoodRequest> requests) {
  std::vector<std::vector<int32_t>> sequences(requests.size());
  std::vector<ScoreRequest> score_requests(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    auto& seq = sequences[i];
    seq = r.context;
    seq.insert(seq.end(), r.continuation.begin(), r.continuation.end() - 1);
    score_requests[i].ids = seq;
    for (size_t k = 0; k < r.continuation.size(); ++k) {
      score_requests[i].positions.push_back(static_cast<int64_t>(r.context.size() + k) - 1);
    }
  }
  const auto logits = model_.logits(score_requests);
  std::vector<LoglikelihoodResult> results(requests.size());
  std::vector<float> logprobs;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& continuation = requests[i].continuation;
    LoglikelihoodResult& out = results[i];
    out.greedy = true;
    for (size_t k = 0; k < continuation.size(); ++k) {
      const auto row = logits[i].row(static_cast<int64_t>(k));
      logprobs.resize(row.size());
      log_softmax(row, logprobs);
      out.logprob += logprobs[continuation[k]];
      out.greedy = out.greedy && argmax(row) == continuation[k];
    }
  }
  return results;
}

std::vector<std::string> EngineBackend::generate(std::span<const GenerationRequest> requests) {
  const auto& stop_ids = tokenizer_.stop_ids();
  std::vector<Session> sessions;
  sessions.reserve(requests.size());
  std::vector<std::vector<int32_t>> generated(requests.size());
  std::vector<std::string> texts(requests.size());
  std::vector<char> active(requests.size(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    sessions.emplace_back(model_);
    if (requests[i].max_tokens <= 0 || requests[i].prompt.empty()) continue;
    sessions[i].prefill(requests[i].prompt);
    active[i] = 1;
  }
  for (;;) {
    std::vector<Session*> step_sessions;
    std::vector<int32_t> step_ids;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!active[i]) continue;
      const int32_t next = argmax(sessions[i].next_logits());
      if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
        active[i] = 0;
        continue;
      }
      generated[i].push_back(next);
      texts[i] = tokenizer_.decode(generated[i], /*skip_special=*/true);
      const bool hit_stop =
          std::any_of(requests[i].stop.begin(), requests[i].stop.end(), [&](const std::string& s) {
            return !s.empty() && texts[i].find(s) != std::string::npos;
          });
      if (hit_stop || static_cast<int>(generated[i].size()) >= requests[i].max_tokens) {
        active[i] = 0;
        continue;
      }
      step_sessions.push_back(&sessions[i]);
      step_ids.push_back(next);
    }
    if (step_sessions.empty()) break;
    std::vector<std::span<const int32_t>> step_spans;
    for (const int32_t& id : step_ids) step_spans.emplace_back(&id, 1);
    model_.extend(step_sessions, step_spans);
  }
  return texts;
}

EvalResult score(const Model& model, const Tokenizer& tokenizer, std::span<const TaskSpec> tasks,
                 const EvalOptions& options) {
  EngineBackend backend(model, tokenizer);
  return evaluate(backend, tasks, options);
}

}  // namespace shoal
