// Tokenizers between Hugging Face files (tokenizer.json + tokenizer_config.json) and GGUF's
// tokenizer.ggml.* metadata, for the two kinds llama.cpp runs: "gpt2" (byte-level BPE with merge
// ranks and a named pre-tokenizer: gpt-2, llama-bpe, qwen2) and "llama" (SentencePiece-style BPE
// with byte fallback, merged by piece score). Internal to the io layer; implemented in
// src/io/gguf_tokenizer_to_gguf.cpp and src/io/gguf_tokenizer_to_hf.cpp. Details and the choices
// made where the formats differ are in docs/GGUF.md.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "shoal/gguf.h"

namespace shoal::io {

// GGUF token types (llama.cpp's llama_token_type).
enum GgufTokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// The pre-tokenizer regexes of the Llama-3 and Qwen2 tokenizer.json files, as llama.cpp's
// "llama-bpe" and "qwen2" pre-tokenizers implement them.
extern const char* const kLlama3SplitPattern;
extern const char* const kQwen2SplitPattern;

// tokenizer.ggml.* metadata (and tokenizer.chat_template) for the tokenizer files in `dir`. The
// token list is padded to `vocab_rows` (the embedding's rows) with unused "[PAD<id>]" tokens, as
// llama.cpp's converter does. `chat_template` replaces the folder's template when set. Throws
// FormatError naming the file and key for a tokenizer llama.cpp cannot run the same way, and
// ConfigError when it has more tokens than the embedding has rows.
std::vector<GgufKv> hf_tokenizer_to_gguf(const std::filesystem::path& dir, int64_t vocab_rows,
                                         const std::optional<std::string>& chat_template);

// The tokenizer.* entries of a GGUF file as stored (for copying into another GGUF);
// `chat_template` replaces tokenizer.chat_template when set.
std::vector<GgufKv> gguf_tokenizer_entries(const GgufFile& file,
                                           const std::optional<std::string>& chat_template);

// Writes tokenizer.json and tokenizer_config.json into `dir` for a GGUF file's vocabulary
// (unused padding tokens left out). Throws FormatError for a vocabulary kind or pre-tokenizer
// shoal cannot express in tokenizer.json.
void write_hf_tokenizer(const GgufFile& file, const std::filesystem::path& dir,
                        const std::optional<std::string>& chat_template);

}  // namespace shoal::io
