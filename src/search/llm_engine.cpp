// The in-process backend: shoal's inference engine, loaded once. Calls are serialised by a mutex
// (one generation already uses the model's whole thread pool), and each one samples with the
// request's seed, so an answer depends only on the messages and the seed.
#include <algorithm>
#include <mutex>
#include <string>

#include "search/llm_common.h"
#include "shoal/engine.h"
#include "shoal/llm.h"
#include "shoal/sampling.h"

namespace shoal::search {
namespace {

class EngineBackend final : public LlmBackend {
 public:
  explicit EngineBackend(const EngineBackendOptions& options)
      : LlmBackend(options.name), o_(options), loaded_(load(options)) {
    if (o_.max_tokens < 1) {
      throw ConfigError("model '" + o_.name + "': max_tokens must be at least 1");
    }
    if (o_.chat_template && loaded_.tokenizer.chat_template_kind() == ChatTemplateKind::kUnknown) {
      throw ConfigError("model '" + o_.name + "': the chat template of " + o_.model.string() +
                        " is not one shoal knows (ChatML, Llama-3, Llama-2/Mistral, Zephyr); set "
                        "'chat_template: false' to send the messages as plain text");
    }
  }

  std::string describe() const override { return "engine " + o_.model.string(); }

 protected:
  LlmResponse do_complete(const LlmRequest& request, int& attempts) override {
    attempts = 1;
    std::lock_guard lock(mutex_);
    const Tokenizer& tok = loaded_.tokenizer;
    const std::vector<int32_t> prompt = prompt_ids(request);
    const int64_t context = loaded_.model.config().max_position_embeddings;
    if (prompt.empty() || (context > 0 && static_cast<int64_t>(prompt.size()) >= context)) {
      throw LlmError(LlmErrorKind::kFailed, 0,
                     "backend '" + name() + "': the prompt has " + std::to_string(prompt.size()) +
                         " tokens; the model's context is " + std::to_string(context));
    }
    const int64_t room =
        context > 0 ? context - static_cast<int64_t>(prompt.size()) : o_.max_tokens;
    const int max_tokens = static_cast<int>(std::min<int64_t>(o_.max_tokens, room));

    Sampler sampler({o_.temperature, o_.top_k, o_.top_p, request.seed});
    Session session(loaded_.model);
    session.prefill(prompt);
    std::vector<int32_t> out;
    std::string text;
    LlmResponse response;
    response.finish_reason = "length";
    const auto& stop_ids = tok.stop_ids();
    for (int i = 0; i < max_tokens; ++i) {
      if (request.cancel != nullptr && request.cancel->load()) throw_cancelled(name());
      const int32_t next = sampler.sample(session.next_logits());
      if (std::binary_search(stop_ids.begin(), stop_ids.end(), next)) {
        response.finish_reason = "stop";
        break;
      }
      out.push_back(next);
      if (!o_.stop.empty()) {
        text = tok.decode(out, /*skip_special=*/true);
        if (cut_at_stop(text)) {
          response.finish_reason = "stop";
          break;
        }
      }
      if (i + 1 < max_tokens) session.append(next);
    }
    if (response.finish_reason == "length" || o_.stop.empty()) {
      text = tok.decode(out, /*skip_special=*/true);
    }
    response.text = std::move(text);
    response.usage.input_tokens = static_cast<int64_t>(prompt.size());
    response.usage.output_tokens = static_cast<int64_t>(out.size());
    return response;
  }

 private:
  static LoadedModel load(const EngineBackendOptions& o) {
    ModelOptions options;
    options.n_threads = o.threads;
    return load_model(o.model, options);
  }

  std::vector<int32_t> prompt_ids(const LlmRequest& request) const {
    const Tokenizer& tok = loaded_.tokenizer;
    if (o_.chat_template && tok.chat_template_kind() != ChatTemplateKind::kNone) {
      return tok.encode(tok.apply_chat_template(request.messages, true), /*add_special=*/false);
    }
    std::string text;
    for (const ChatMessage& m : request.messages) {
      if (!text.empty()) text += "\n\n";
      text += m.content;
    }
    return tok.encode(text, /*add_special=*/true);
  }

  // Cuts `text` before the first stop string it holds; true when one was found.
  bool cut_at_stop(std::string& text) const {
    size_t first = std::string::npos;
    for (const std::string& s : o_.stop) {
      if (!s.empty()) first = std::min(first, text.find(s));
    }
    if (first == std::string::npos) return false;
    text.resize(first);
    return true;
  }

  EngineBackendOptions o_;
  LoadedModel loaded_;
  std::mutex mutex_;
};

}  // namespace
}  // namespace shoal::search

namespace shoal {

std::unique_ptr<LlmBackend> make_engine_backend(const EngineBackendOptions& options) {
  return std::make_unique<search::EngineBackend>(options);
}

}  // namespace shoal
