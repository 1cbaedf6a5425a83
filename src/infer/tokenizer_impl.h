// The parts a Tokenizer is made of, shared by the loaders (tokenizer_json.cpp,
// tokenizer_gguf.cpp, tokenizer_vocab.cpp) and the pipeline (tokenizer.cpp). The pipeline follows
// Hugging Face `tokenizers`: split off added tokens -> normalize -> pre-tokenize into words ->
// model (word -> ids) -> post-process (BOS/EOS); decoding runs the decoder steps over the pieces.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shoal/tokenizer.h"

namespace shoal::infer {

// ---- UTF-8 (tokenizer_pretok.cpp) -------------------------------------------------------------

// Bytes in the UTF-8 sequence starting at s[i] when it is well formed (1..4), else 0.
size_t utf8_sequence_length(std::string_view s, size_t i);
// `s` with every ill-formed sequence replaced by U+FFFD, one per maximal invalid subpart (as
// Rust's String::from_utf8_lossy and Python's errors="replace" do).
std::string utf8_lossy(std::string_view s);
bool is_valid_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t cp);

// GPT-2's reversible byte <-> printable character map: byte b is written as the UTF-8 text
// byte_level_chars()[b]; printable Latin-1 bytes map to themselves, the rest to U+0100 upwards.
const std::array<std::string, 256>& byte_level_chars();
// The byte a byte-level character stands for, or -1 (cp is a code point).
int byte_level_byte(char32_t cp);
// "<0x0A>" -> 0x0A; -1 for anything else.
int parse_byte_token(std::string_view piece);

// Heterogeneous lookup so a string_view finds a std::string key without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// ---- Regex (PCRE2, UTF + Unicode properties, JIT) -------------------------------------------

class Regex {
 public:
  // Throws FormatError "<where>: ..." when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Byte ranges [begin, end) of successive non-overlapping matches; `text` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

// GPT-2's pre-tokenizer pattern (also ByteLevel's use_regex), and the Llama-3 and Qwen2 ones.
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kQwen2Pattern;

// ---- Normalizers, pre-tokenizers, decoders (tokenizer_pretok.cpp) -----------------------------

// Where a piece of text sits in the input, for the steps that treat the start specially.
struct SegmentContext {
  bool at_start = true;      // the segment begins at byte 0 of the input
  bool after_token = false;  // an added token comes right before it
};

struct NormalizerStep {
  enum class Kind {
    kPrepend,         // HF Prepend: `text` before any non-empty segment
    kPrependAtStart,  // llama.cpp: `text` before a segment at the start or after a token
    kReplace,         // every `from` becomes `text`
    kNfc,             // accepted; see apply_normalizers
  };
  Kind kind;
  std::string text;
  std::string from;
};
std::string apply_normalizers(const std::vector<NormalizerStep>& steps, std::string_view text,
                              const SegmentContext& ctx);

struct PreTokenizerStep {
  // kSpmWords is shoal's own, not from tokenizer.json: see spm_words_are_independent.
  enum class Kind { kByteLevel, kSplit, kMetaspace, kDigits, kSpmWords };
  enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };
  Kind kind;
  // kByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
  // kSplit (regex or literal), kByteLevel with use_regex
  std::shared_ptr<const Regex> regex;
  std::string literal;  // kSplit with a String pattern
  Behavior behavior = Behavior::kIsolated;
  // kMetaspace
  std::string replacement = "\xE2\x96\x81";  // U+2581
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;
  // kDigits
  bool individual_digits = false;
};
// Appends the words of `text` to `words`. Without steps the whole text is one word.
// Whether cutting SentencePiece-style text before each U+2581 that follows another character
// leaves the tokenization unchanged: true when no vocabulary piece holds U+2581 after another
// character, since then no merge can join symbols across such a cut, and BPE on each part gives
// the same symbols as BPE on the whole. The loaders then add a kSpmWords step, which makes
// words short enough for the word cache.
bool spm_words_are_independent(const PieceMap& vocab);
void apply_pre_tokenizers(const std::vector<PreTokenizerStep>& steps, std::string_view text,
                          const SegmentContext& ctx, std::vector<std::string>& words);

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind;
  std::string from, to;  // kReplace
  char32_t strip_char = ' ';
  int strip_start = 0, strip_stop = 0;       // kStrip
  std::string replacement = "\xE2\x96\x81";  // kMetaspace
  bool metaspace_strip_first = true;         // kMetaspace: prepend_scheme != never
};
// Pieces -> text. raw: for one token in a stream (no start-of-text stripping, bytes not made
// valid UTF-8). Without steps the pieces are joined with ' ' (HF's behaviour).
std::string apply_decoders(const std::vector<DecoderStep>& steps, std::vector<std::string> pieces,
                           bool raw);

// ---- Models: one word -> ids ------------------------------------------------------------------

class WordModel {
 public:
  virtual ~WordModel() = default;
  virtual void encode_word(std::string_view word, std::vector<int32_t>& out) const = 0;
};

// Merge-rank BPE (tokenizer_bpe.cpp), as HF's BPE model: the word starts as its characters; the
// adjacent pair with the lowest merge rank merges first (leftmost on ties) until none applies.
struct BpeOptions {
  bool byte_fallback = false;  // unknown characters -> <0xXX> tokens
  bool ignore_merges = false;  // a word that is a vocabulary entry is that entry (Llama-3)
  bool fuse_unk = false;       // consecutive unknowns -> one unk
  int32_t unk_id = -1;         // -1: unknown characters are dropped (as HF does)
};
class BpeModel : public WordModel {
 public:
  BpeModel(const PieceMap* vocab, BpeOptions options);
  // Adds the next merge (rank = number of merges added before). false if a piece is missing.
  bool add_merge(std::string_view left, std::string_view right);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const override;

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const PieceMap* vocab_;
  BpeOptions options_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_;  // <0xXX> ids, -1 if absent
};

// Score BPE (tokenizer_spm.cpp), as llama.cpp's SentencePiece tokenizer: the word starts as its
// characters; the adjacent pair whose concatenation is a vocabulary piece with the highest score
// merges first (leftmost on ties); characters left unknown become <0xXX> byte tokens.
class SpmModel : public WordModel {
 public:
  // `mergeable[id]`: whether the piece may be formed by merging (normal and user-defined pieces).
  SpmModel(const PieceMap* vocab, std::vector<float> scores, std::vector<uint8_t> mergeable,
           int32_t unk_id);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const override;

 private:
  int32_t find(std::string_view piece) const;  // mergeable id or -1
  const PieceMap* vocab_;
  std::vector<float> scores_;
  std::vector<uint8_t> mergeable_;
  int32_t unk_id_;
  std::array<int32_t, 256> byte_ids_;
};

// ---- The tokenizer ----------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = false;  // matched in normalized text (its content normalized too)
  bool lstrip = false, rstrip = false, single_word = false;
  std::string pattern;  // what is matched: content, or content normalized
};

}  // namespace shoal::infer

namespace shoal {

struct Tokenizer::Impl {
  std::string source;  // the tokenizer file, for messages

  std::vector<std::string> pieces;  // id -> piece (vocabulary and added tokens)
  infer::PieceMap vocab;            // the model's vocabulary
  std::vector<uint8_t> special;     // id -> 1 when special
  std::vector<infer::AddedToken> added;
  infer::PieceMap added_ids;
  // Indices into `added` by the first byte of their pattern, longest first; [0]: matched in the
  // raw text, [1]: in normalized text.
  std::array<std::vector<size_t>, 256> added_by_byte[2];

  std::vector<infer::NormalizerStep> normalizer;
  std::vector<infer::PreTokenizerStep> pre_tokenizer;
  std::unique_ptr<infer::WordModel> model;
  std::vector<infer::DecoderStep> decoder;
  std::vector<int32_t> prefix_ids, suffix_ids;  // added by encode(add_special = true)

  int32_t bos = -1, eos = -1;
  std::vector<int32_t> stops;

  ChatTemplateKind chat_kind = ChatTemplateKind::kNone;
  std::string chat_template;
  std::string chat_source;  // the file holding the template
  std::string bos_text, eos_text;

  // Word -> ids cache (words of up to kMaxCachedWord bytes).
  static constexpr size_t kMaxCachedWord = 128;
  static constexpr size_t kMaxCacheEntries = 1 << 18;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>, infer::StringHash, std::equal_to<>>
      cache;

  // Shared by the loaders once every field above is set: per-token arrays sized, added-token
  // patterns built (normalized ones through the normalizer), the chat kind detected, stop ids.
  void finish();
};

namespace infer {
ChatTemplateKind detect_chat_template(std::string_view tmpl);
std::string render_chat(const Tokenizer::Impl& impl, std::span<const ChatMessage> messages,
                        bool add_generation_prompt);
}  // namespace infer

}  // namespace shoal
