// Tokenizer::from_vocab: a vocabulary given as plain arrays (a GGUF file's tokenizer.ggml.* keys,
// llama2.c's tokenizer.bin), tokenized as llama.cpp does. "llama": SentencePiece-style score
// merges over text whose spaces are written U+2581, with a U+2581 put before the text and after
// each special token (add_space_prefix); "gpt2": byte-level BPE with merge ranks and the
// pre-tokenizer that tokenizer.ggml.pre names. Control and user-defined tokens are matched in
// the text like tokenizer.json's added tokens.
#include "infer/tokenizer_impl.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal {

namespace {

using infer::DecoderStep;
using infer::NormalizerStep;
using infer::PreTokenizerStep;

constexpr const char* kSpm = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

enum TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

}  // namespace

Tokenizer Tokenizer::from_vocab(const TokenizerVocab& v) {
  const std::string src = v.source.empty() ? std::string("vocabulary") : v.source;
  const auto fail = [&](const std::string& key, const std::string& what) {
    throw FormatError(src + ": " + key + ": " + what);
  };
  const size_t n = v.tokens.size();
  if (n == 0) fail("tokenizer.ggml.tokens", "is empty");
  if (n > (size_t{1} << 24))
    fail("tokenizer.ggml.tokens", std::to_string(n) + " tokens is too many");
  if (!v.token_types.empty() && v.token_types.size() != n) {
    fail("tokenizer.ggml.token_type",
         std::to_string(v.token_types.size()) + " entries for " + std::to_string(n) + " tokens");
  }
  const auto check_id = [&](int32_t id, const char* key) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      fail(key,
           std::to_string(id) + " is not a token id (vocabulary of " + std::to_string(n) + ")");
    }
  };
  check_id(v.bos_id, "tokenizer.ggml.bos_token_id");
  check_id(v.eos_id, "tokenizer.ggml.eos_token_id");
  check_id(v.eot_id, "tokenizer.ggml.eot_token_id");
  check_id(v.unk_id, "tokenizer.ggml.unknown_token_id");

  auto im = std::make_shared<Impl>();
  im->source = src;
  im->pieces = v.tokens;
  im->vocab.reserve(n);
  std::vector<int32_t> types(n, kNormal);
  for (size_t i = 0; i < n; ++i) {
    im->vocab.try_emplace(v.tokens[i], static_cast<int32_t>(i));  // the first of duplicates wins
    types[i] = !v.token_types.empty()                      ? v.token_types[i]
               : infer::parse_byte_token(v.tokens[i]) >= 0 ? kByte
                                                           : kNormal;
    if ((types[i] == kControl || types[i] == kUserDefined) && !v.tokens[i].empty()) {
      infer::AddedToken t;
      t.content = v.tokens[i];
      t.id = static_cast<int32_t>(i);
      t.special = types[i] == kControl;
      im->added.push_back(std::move(t));
    }
  }

  if (v.model == "llama") {
    if (v.scores.size() != n) {
      fail("tokenizer.ggml.scores",
           std::to_string(v.scores.size()) + " scores for " + std::to_string(n) + " tokens");
    }
    im->normalizer.push_back({NormalizerStep::Kind::kReplace, kSpm, " "});
    if (v.add_space_prefix)
      im->normalizer.push_back({NormalizerStep::Kind::kPrependAtStart, kSpm, {}});
    if (infer::spm_words_are_independent(im->vocab)) {
      im->pre_tokenizer.push_back({PreTokenizerStep::Kind::kSpmWords});
    }
    std::vector<uint8_t> mergeable(n);
    for (size_t i = 0; i < n; ++i) mergeable[i] = types[i] == kNormal || types[i] == kUserDefined;
    im->model =
        std::make_unique<infer::SpmModel>(&im->vocab, v.scores, std::move(mergeable), v.unk_id);
    DecoderStep replace{DecoderStep::Kind::kReplace};
    replace.from = kSpm;
    replace.to = " ";
    im->decoder.push_back(replace);
    im->decoder.push_back({DecoderStep::Kind::kByteFallback});
    im->decoder.push_back({DecoderStep::Kind::kFuse});
    if (v.add_space_prefix) {
      DecoderStep strip{DecoderStep::Kind::kStrip};
      strip.strip_start = 1;
      im->decoder.push_back(strip);
    }
  } else if (v.model == "gpt2") {
    const std::string& pre = v.pre;
    const char* pattern = nullptr;
    bool llama3 = false;
    if (pre.empty() || pre == "default" || pre == "gpt-2" || pre == "gpt2") {
      pattern = nullptr;  // ByteLevel's own (GPT-2) pattern
    } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
      pattern = infer::kLlama3Pattern;
      llama3 = true;
    } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
      pattern = infer::kQwen2Pattern;
    } else {
      fail("tokenizer.ggml.pre", "unsupported " + io::quoted(pre) +
                                     " (shoal supports default, gpt-2, llama-bpe, llama3, qwen2)");
    }
    if (pattern != nullptr) {
      PreTokenizerStep split;
      split.kind = PreTokenizerStep::Kind::kSplit;
      split.regex = std::make_shared<infer::Regex>(pattern, src + ": tokenizer.ggml.pre");
      im->pre_tokenizer.push_back(std::move(split));
    }
    PreTokenizerStep bytes;
    bytes.kind = PreTokenizerStep::Kind::kByteLevel;
    bytes.add_prefix_space = false;
    bytes.use_regex = pattern == nullptr;
    im->pre_tokenizer.push_back(std::move(bytes));

    infer::BpeOptions opt;
    opt.ignore_merges = llama3;
    auto bpe = std::make_unique<infer::BpeModel>(&im->vocab, opt);
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      // Byte-level pieces never hold a plain space, so the first space after the first byte
      // separates the pair.
      const size_t space = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      const std::string key = "tokenizer.ggml.merges[" + std::to_string(i) + "]";
      if (space == std::string::npos) fail(key, "expected \"left right\", found " + io::quoted(m));
      if (!bpe->add_merge(std::string_view(m).substr(0, space),
                          std::string_view(m).substr(space + 1))) {
        fail(key, io::quoted(m) + ": a piece or their concatenation is not a token");
      }
    }
    im->model = std::move(bpe);
    im->decoder.push_back({DecoderStep::Kind::kByteLevel});
  } else {
    fail("tokenizer.ggml.model",
         "unsupported " + io::quoted(v.model) + " (shoal supports llama, gpt2)");
  }

  im->bos = v.bos_id;
  im->eos = v.eos_id;
  if (v.add_bos && v.bos_id >= 0) im->prefix_ids.push_back(v.bos_id);
  if (v.add_eos && v.eos_id >= 0) im->suffix_ids.push_back(v.eos_id);
  if (v.eot_id >= 0) im->stops.push_back(v.eot_id);
  im->chat_template = v.chat_template;
  im->chat_source = src;
  im->finish();
  // Unknown pieces (<unk>) are special for decoding (skipped with skip_special) but never
  // matched in text.
  for (size_t i = 0; i < n; ++i) {
    if (types[i] == kUnknown) im->special[i] = 1;
  }
  return Tokenizer(std::move(im));
}

}  // namespace shoal
