// Tokenizers: text <-> token ids, as Hugging Face `tokenizers` (tokenizer.json) and llama.cpp
// (a GGUF file's vocabulary) do it, and chat templates for the common chat formats.
//
// Supported: byte-level BPE (GPT-2, Llama-3, Qwen2/2.5/3: ByteLevel / Split pre-tokenizers with
// Unicode regexes run by PCRE2), SentencePiece-style BPE with byte fallback (Llama-2, Mistral,
// TinyLlama: tokenizer.json with Prepend/Replace normalizers or Metaspace, or a GGUF "llama"
// vocabulary merged by score as llama.cpp does), added and special tokens, BOS/EOS rules,
// decoding. Chat templates are recognised, not interpreted: ChatML, Llama-3, Llama-2 / Mistral
// [INST] and Zephyr are rendered in C++; any other template is a ConfigError when applied.
//
// Thread safety: a Tokenizer is immutable after construction except for an internal word cache
// guarded by a mutex; every const method may be called from many threads at once. Copies share
// the same data (cheap).
//
// Implemented in src/infer/tokenizer*.cpp: tokenizer.cpp (the encode/decode pipeline),
// tokenizer_json.cpp (tokenizer.json + tokenizer_config.json), tokenizer_gguf.cpp (GGUF and plain
// vocabularies), tokenizer_bpe.cpp (merge-rank BPE), tokenizer_spm.cpp (score BPE),
// tokenizer_pretok.cpp (normalizers, pre-tokenizers, decoders), tokenizer_chat.cpp (templates).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shoal {

class GgufFile;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The chat formats shoal renders. kNone: the tokenizer has no template; kUnknown: it has one that
// shoal does not recognise (apply_chat_template throws; the way out is --no-chat-template).
enum class ChatTemplateKind { kNone, kUnknown, kChatMl, kLlama3, kLlama2, kMistral, kZephyr };
const char* chat_template_kind_name(ChatTemplateKind kind);

// A vocabulary given as plain arrays, as in a GGUF file's tokenizer.ggml.* keys or llama2.c's
// tokenizer.bin. from_gguf() fills one of these; tests and tools may build one directly.
struct TokenizerVocab {
  // "llama": SentencePiece-style; pairs merge by the score of the merged piece (highest first),
  // unknown characters fall back to <0xXX> byte tokens, ' ' is written U+2581.
  // "gpt2": byte-level BPE; pairs merge by the rank of `merges`; `pre` names the pre-tokenizer.
  std::string model = "llama";
  std::vector<std::string> tokens;
  std::vector<float> scores;         // "llama": one per token
  std::vector<int32_t> token_types;  // GGUF's: 1 normal, 2 unknown, 3 control, 4 user-defined,
                                     // 5 unused, 6 byte; empty = all normal
  std::vector<std::string> merges;   // "gpt2": "left right", highest priority first
  std::string pre;                   // "gpt2": "default"/"gpt-2", "llama-bpe"/"llama3", "qwen2"
  int32_t bos_id = -1;               // -1: none
  int32_t eos_id = -1;
  int32_t eot_id = -1;  // end of turn, also a stop token (e.g. Llama-3's <|eot_id|>)
  int32_t unk_id = -1;
  bool add_bos = true;  // encode(add_special = true) starts with BOS
  bool add_eos = false;
  bool add_space_prefix = true;  // "llama": a space before the text and after each special token
  std::string chat_template;     // Jinja source, or empty
  std::string source;            // file name, for messages
};

class Tokenizer {
 public:
  // A Hugging Face folder: tokenizer.json (required), tokenizer_config.json,
  // special_tokens_map.json, generation_config.json, chat_template.jinja (optional). Throws
  // FormatError naming the file and key (e.g. an unsupported model.type or pre-tokenizer, with
  // the supported ones) or IoError.
  static Tokenizer from_folder(const std::filesystem::path& dir);
  // The vocabulary in a GGUF file's tokenizer.ggml.* metadata ("llama" or "gpt2" models) and its
  // tokenizer.chat_template.
  static Tokenizer from_gguf(const GgufFile& file);
  static Tokenizer from_vocab(const TokenizerVocab& vocab);

  // Text -> ids. add_special: add the BOS/EOS (or other) tokens the tokenizer's post-processor
  // asks for. parse_special: special tokens written in the text (e.g. "<|im_start|>") become
  // their ids; when false they are tokenized as plain text (added non-special tokens still
  // match). Text that is not valid UTF-8 has each bad sequence replaced by U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const;
  // Ids -> text, as HF's decode(ids, skip_special_tokens) without clean-up of spaces. Ids out of
  // range are skipped. Invalid UTF-8 (a sequence cut mid-character) becomes U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The bytes one token adds in the middle of a text (for streaming): byte-level pieces and
  // <0xXX> tokens give raw bytes, U+2581 gives ' '; no leading space is stripped. A character
  // may span several tokens, so a streamer must hold back an incomplete UTF-8 tail.
  std::string token_text(int32_t id) const;
  // The vocabulary entry as stored (e.g. "Ġthe", "▁the", "<0x0A>", "<|im_end|>"); empty if out
  // of range.
  std::string token_piece(int32_t id) const;
  // The id of a vocabulary entry or added token, spelled as stored.
  std::optional<int32_t> token_id(std::string_view piece) const;

  size_t vocab_size() const;  // one more than the highest id
  int32_t bos_id() const;     // -1 if none
  int32_t eos_id() const;     // -1 if none
  // Ids that end a generation: EOS, generation_config.json's eos_token_id(s), the chat format's
  // end-of-turn token (<|im_end|>, <|eot_id|>); sorted, no duplicates.
  const std::vector<int32_t>& stop_ids() const;
  bool is_special(int32_t id) const;
  // Whether encode(text, add_special = true) starts with BOS.
  bool adds_bos() const;

  ChatTemplateKind chat_template_kind() const;
  // Renders a conversation in the model's chat format, ending with the assistant header when
  // add_generation_prompt. The text includes the BOS text when the template writes it, so encode
  // it with add_special = false. Throws ConfigError (naming the file, and saying to pass
  // --no-chat-template) when there is no template or it is not one shoal recognises, and for a
  // conversation the format cannot express (e.g. [INST] roles that do not alternate).
  std::string apply_chat_template(std::span<const ChatMessage> messages,
                                  bool add_generation_prompt = true) const;

  struct Impl;  // internal: src/infer/tokenizer_impl.h

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace shoal
