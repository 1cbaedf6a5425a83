// shoal generate MODEL --prompt TEXT: stream a continuation to stdout (or one JSON object per
// token with --json, with the top log-probabilities as the OpenAI API reports them).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "shoal/engine.h"
#include "shoal/error.h"
#include "shoal/sampling.h"

namespace shoal::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string system;
  int max_tokens = 128;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool json = false;
  int top_logprobs = 0;
  bool no_chat_template = false;
  int threads = 0;
  bool bf16_activations = false;
};

// The prompt as token ids: through the model's chat template when it has a known one, as plain
// text (with the tokenizer's BOS) when it has none.
std::vector<int32_t> prompt_ids(const Tokenizer& tokenizer, const GenerateFlags& flags,
                                const std::string& model_path) {
  if (flags.no_chat_template || tokenizer.chat_template_kind() == ChatTemplateKind::kNone) {
    return tokenizer.encode(flags.prompt, /*add_special=*/true);
  }
  if (tokenizer.chat_template_kind() == ChatTemplateKind::kUnknown) {
    throw ConfigError(model_path +
                      ": the chat template is not one shoal knows (ChatML, Llama-3, Llama-2/"
                      "Mistral, Zephyr); pass --no-chat-template to send the prompt as plain text");
  }
  std::vector<ChatMessage> messages;
  if (!flags.system.empty()) messages.push_back({"system", flags.system});
  messages.push_back({"user", flags.prompt});
  // The rendered template already holds any BOS text it wants.
  return tokenizer.encode(tokenizer.apply_chat_template(messages, true), /*add_special=*/false);
}

// Prints generated text as it grows. Decoding the whole sequence each time (rather than one
// token's bytes) lets the tokenizer's decoder handle what depends on context, such as the
// leading space a SentencePiece decoder drops at the start; text that ends in an incomplete
// UTF-8 character (U+FFFD) is held back until the next token completes it.
class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<int32_t> prompt)
      : tokenizer_(tokenizer), ids_(std::move(prompt)), printed_(decoded().size()) {}

  void push(int32_t id) {
    ids_.push_back(id);
    const std::string text = decoded();
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    if (text.size() < printed_ || std::string_view(text).ends_with(kReplacement)) return;
    std::fwrite(text.data() + printed_, 1, text.size() - printed_, stdout);
    std::fflush(stdout);
    printed_ = text.size();
  }

 private:
  std::string decoded() const { return tokenizer_.decode(ids_, /*skip_special=*/true); }

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  size_t printed_;
};

nlohmann::json top_json(const Tokenizer& tokenizer, std::span<const float> logits, int k) {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& t : top_logprobs(logits, k)) {
    top.push_back({{"id", t.id}, {"token", tokenizer.token_text(t.id)}, {"logprob", t.logprob}});
  }
  return top;
}

void run(const GenerateFlags& flags) {
  ModelOptions options;
  options.n_threads = flags.threads;
  options.bf16_activations = flags.bf16_activations;
  const LoadedModel loaded = load_model(flags.model, options);
  const Tokenizer& tokenizer = loaded.tokenizer;
  const auto ids = prompt_ids(tokenizer, flags, flags.model);
  if (ids.empty()) throw ConfigError("the prompt is empty and the model has no BOS token");
  // The context the model was trained for; past it positions are out of distribution.
  const int64_t context = loaded.model.config().max_position_embeddings;
  if (context > 0 && static_cast<int64_t>(ids.size()) > context) {
    throw ConfigError("the prompt has " + std::to_string(ids.size()) +
                      " tokens, more than the model's context of " + std::to_string(context) +
                      " (max_position_embeddings)");
  }
  const int max_tokens =
      context > 0 ? static_cast<int>(std::min<int64_t>(flags.max_tokens, context - ids.size()))
                  : flags.max_tokens;

  Sampler sampler({flags.temperature, flags.top_k, flags.top_p, flags.seed});
  Session session(loaded.model);
  session.prefill(ids);
  const auto& stop_ids = tokenizer.stop_ids();
  TextStream stream(tokenizer, ids);
  std::vector<float> logprobs;
  for (int i = 0; i < max_tokens; ++i) {
    const auto logits = session.next_logits();
    const int32_t next = sampler.sample(logits);
    if (flags.json) {
      logprobs.resize(logits.size());
      log_softmax(logits, logprobs);
      nlohmann::json line{{"index", i},
                          {"id", next},
                          {"text", tokenizer.token_text(next)},
                          {"logprob", logprobs[next]}};
      if (flags.top_logprobs > 0)
        line["top_logprobs"] = top_json(tokenizer, logits, flags.top_logprobs);
      std::printf("%s\n",
                  line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    if (!flags.json) stream.push(next);
    std::fflush(stdout);
    if (i + 1 < max_tokens) session.append(next);
  }
  if (!flags.json) std::fputs("\n", stdout);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Continue a prompt with a model (HF folder or GGUF)");
  cmd->add_option("model", flags->model, "Model folder or .gguf file")->required();
  cmd->add_option("--prompt,-p", flags->prompt, "Prompt text");
  cmd->add_option("--system", flags->system, "System message (with a chat template)");
  cmd->add_option("--max-tokens,-n", flags->max_tokens, "Most tokens to generate (default 128)");
  cmd->add_option("--temperature", flags->temperature, "0: greedy (default)");
  cmd->add_option("--top-k", flags->top_k, "Sample among the k most likely tokens (0: off)");
  cmd->add_option("--top-p", flags->top_p, "Nucleus sampling mass (1: off)");
  cmd->add_option("--seed", flags->seed, "Seed of the sampler");
  cmd->add_flag("--json", flags->json, "One JSON object per generated token");
  cmd->add_option("--top-logprobs", flags->top_logprobs,
                  "With --json: the K most likely next tokens and their log-probabilities");
  cmd->add_flag("--no-chat-template", flags->no_chat_template,
                "Send the prompt as plain text even when the model has a chat template");
  cmd->add_option("--threads", flags->threads, "Threads (default: all cores)");
  cmd->add_flag("--bf16-activations", flags->bf16_activations,
                "Round activations to BF16 in products with BF16 weights, as PyTorch and "
                "llama.cpp do (faster prefill; default: f32-grade activations)");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace shoal::cli
