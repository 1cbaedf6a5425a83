// Text handling around the BPE models: UTF-8, GPT-2's byte <-> character map, PCRE2 regexes,
// and the normalizer, pre-tokenizer and decoder steps of tokenizer.json, with the semantics of
// Hugging Face `tokenizers` (the reference the tests compare against).
#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "infer/tokenizer_impl.h"
#include "shoal/error.h"

namespace shoal::infer {

// ---- UTF-8 ------------------------------------------------------------------------------------

namespace {

// The allowed range of the second byte for a lead byte (Unicode Table 3-7); the bytes after it
// are always 80..BF. {0, 0} for a byte that cannot start a sequence of two or more.
struct SecondRange {
  unsigned char lo, hi;
  int length;
};
SecondRange second_range(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {0x80, 0xBF, 2};
  if (lead == 0xE0) return {0xA0, 0xBF, 3};
  if (lead == 0xED) return {0x80, 0x9F, 3};
  if (lead >= 0xE1 && lead <= 0xEF) return {0x80, 0xBF, 3};
  if (lead == 0xF0) return {0x90, 0xBF, 4};
  if (lead >= 0xF1 && lead <= 0xF3) return {0x80, 0xBF, 4};
  if (lead == 0xF4) return {0x80, 0x8F, 4};
  return {0, 0, 0};
}

// Bytes of the longest prefix of a well-formed sequence at s[i] (at least 1), for the lossy
// conversion: one U+FFFD stands for that many bytes.
size_t maximal_subpart(std::string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  const SecondRange r = second_range(lead);
  if (r.length == 0) return 1;
  size_t n = 1;
  for (int k = 1; k < r.length && i + k < s.size(); ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? (b >= r.lo && b <= r.hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return 1;
  const SecondRange r = second_range(lead);
  if (r.length == 0 || i + r.length > s.size()) return 0;
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < r.lo || b1 > r.hi) return 0;
  for (int k = 2; k < r.length; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return r.length;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += maximal_subpart(s, i);
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// The code point of the valid sequence of n bytes at s[i].
char32_t decode_utf8(std::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]));
  };
  switch (n) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

// GPT-2's table: bytes that are printable Latin-1 stand for themselves; the other 68 bytes take
// U+0100, U+0101, ... in byte order, so that every byte is a visible character.
struct ByteLevelTables {
  std::array<std::string, 256> chars;
  std::array<int, 324> bytes;  // code point -> byte, -1 if not a byte-level character
  ByteLevelTables() {
    bytes.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      append_utf8(chars[b], cp);
      bytes[cp] = b;
    }
  }
};
const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

const std::array<std::string, 256>& byte_level_chars() {
  return byte_level_tables().chars;
}

int byte_level_byte(char32_t cp) {
  return cp < 324 ? byte_level_tables().bytes[cp] : -1;
}

int parse_byte_token(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  int v = 0;
  for (char ch : piece.substr(3, 2)) {
    int d;
    if (ch >= '0' && ch <= '9')
      d = ch - '0';
    else if (ch >= 'A' && ch <= 'F')
      d = ch - 'A' + 10;
    else if (ch >= 'a' && ch <= 'f')
      d = ch - 'a' + 10;
    else
      return -1;
    v = v * 16 + d;
  }
  return v;
}

// ---- Regex ------------------------------------------------------------------------------------

// The published pre-tokenizer patterns: GPT-2's (contractions, letters, numbers, other
// symbols, each with an optional leading space; runs of spaces leave the last space to the next
// word), and the Llama-3 / Qwen2 variants (case-insensitive contractions, a leading non-letter
// joins a word, numbers in groups of up to three / one digit each, newlines kept apart).
const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

Regex::Regex(const std::string& pattern, const std::string& where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // UCP: \s, \d, \w and the POSIX classes follow Unicode properties, as in Oniguruma (which HF
  // tokenizers uses) on UTF-8 text.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(error, buf, sizeof buf);
    throw FormatError(where + ": regex does not compile at offset " + std::to_string(offset) +
                      ": " + reinterpret_cast<const char*>(buf));
  }
  // JIT makes matching several times faster; when it is unavailable the interpreter still works.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  SHOAL_ASSERT(md != nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // The text was made valid UTF-8 before it got here, so PCRE2 need not check it each time.
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH, or a resource limit: the rest is one gap
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0], end = ov[1];
    if (end == begin) {  // an empty match: step over one character
      if (begin >= text.size()) break;
      const size_t n = utf8_sequence_length(text, begin);
      pos = begin + std::max<size_t>(n, 1);
      continue;
    }
    out.emplace_back(begin, end);
    pos = end;
  }
  pcre2_match_data_free(md);
  return out;
}

// ---- Normalizers ------------------------------------------------------------------------------

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t hit = s.find(from, start);
    if (hit == std::string::npos) break;
    out.append(s, start, hit - start);
    out += to;
    start = hit + from.size();
  }
  if (start == 0) return;
  out.append(s, start);
  s = std::move(out);
}

}  // namespace

std::string apply_normalizers(const std::vector<NormalizerStep>& steps, std::string_view text,
                              const SegmentContext& ctx) {
  std::string s(text);
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.text);
        break;
      case NormalizerStep::Kind::kPrependAtStart:
        if (!s.empty() && (ctx.at_start || ctx.after_token)) s.insert(0, step.text);
        break;
      case NormalizerStep::Kind::kReplace:
        replace_all(s, step.from, step.text);
        break;
      case NormalizerStep::Kind::kNfc:
        // Accepted without composing: text is almost always precomposed already (all of the
        // conformance inputs are), and composition would need Unicode tables (ICU) that shoal
        // does not link. Decomposed input therefore tokenizes as written.
        break;
    }
  }
  return s;
}

// ---- Pre-tokenizers ---------------------------------------------------------------------------

namespace {

using Piece = std::string;

// Cuts `text` at the given matches according to HF's SplitDelimiterBehavior.
void split_by(std::string_view text, const std::vector<std::pair<size_t, size_t>>& matches,
              PreTokenizerStep::Behavior behavior, std::vector<Piece>& out) {
  using B = PreTokenizerStep::Behavior;
  // (begin, end, is_match) covering the whole text.
  struct Part {
    size_t begin, end;
    bool match;
  };
  std::vector<Part> parts;
  size_t pos = 0;
  for (auto [b, e] : matches) {
    if (b > pos) parts.push_back({pos, b, false});
    parts.push_back({b, e, true});
    pos = e;
  }
  if (pos < text.size()) parts.push_back({pos, text.size(), false});

  std::string pending;  // kMergedWithNext: a match waiting for the gap after it
  bool have_pending = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& p = parts[i];
    const std::string_view s = text.substr(p.begin, p.end - p.begin);
    switch (behavior) {
      case B::kIsolated:
        out.emplace_back(s);
        break;
      case B::kRemoved:
        if (!p.match) out.emplace_back(s);
        break;
      case B::kMergedWithPrevious:
        if (p.match && i > 0 && !parts[i - 1].match) {
          out.back() += s;
        } else {
          out.emplace_back(s);
        }
        break;
      case B::kMergedWithNext:
        if (p.match) {
          if (have_pending) out.push_back(std::move(pending));
          pending = std::string(s);
          have_pending = true;
        } else if (have_pending) {
          out.push_back(std::move(pending) + std::string(s));
          have_pending = false;
        } else {
          out.emplace_back(s);
        }
        break;
      case B::kContiguous:
        if (p.match && i > 0 && parts[i - 1].match) {
          out.back() += s;
        } else {
          out.emplace_back(s);
        }
        break;
    }
  }
  if (have_pending) out.push_back(std::move(pending));
}

std::vector<std::pair<size_t, size_t>> find_literal(std::string_view text, std::string_view lit) {
  std::vector<std::pair<size_t, size_t>> out;
  if (lit.empty()) return out;
  for (size_t pos = text.find(lit); pos != std::string_view::npos;
       pos = text.find(lit, pos + lit.size())) {
    out.emplace_back(pos, pos + lit.size());
  }
  return out;
}

const Regex& gpt2_regex() {
  static const Regex regex(kGpt2Pattern, "GPT-2 pre-tokenizer pattern");
  return regex;
}

const Regex& digits_regex() {
  static const Regex regex(R"(\p{N})", "digits pattern");
  return regex;
}

}  // namespace

namespace {

constexpr std::string_view kMetaspaceChar = "\xE2\x96\x81";  // U+2581

// Whether the character before byte `pos` of `s` is U+2581.
bool metaspace_before(std::string_view s, size_t pos) {
  return pos >= kMetaspaceChar.size() &&
         s.substr(pos - kMetaspaceChar.size(), kMetaspaceChar.size()) == kMetaspaceChar;
}

}  // namespace

bool spm_words_are_independent(const PieceMap& vocab) {
  for (const auto& [piece, id] : vocab) {
    for (size_t pos = piece.find(kMetaspaceChar); pos != std::string::npos;
         pos = piece.find(kMetaspaceChar, pos + kMetaspaceChar.size())) {
      if (pos > 0 && !metaspace_before(piece, pos)) return false;
    }
  }
  return true;
}

void apply_pre_tokenizers(const std::vector<PreTokenizerStep>& steps, std::string_view text,
                          const SegmentContext& ctx, std::vector<std::string>& words) {
  std::vector<Piece> pieces{Piece(text)};
  std::vector<Piece> next;
  using K = PreTokenizerStep::Kind;
  for (const PreTokenizerStep& step : steps) {
    next.clear();
    for (size_t i = 0; i < pieces.size(); ++i) {
      Piece& piece = pieces[i];
      switch (step.kind) {
        case K::kSplit: {
          const auto matches =
              step.regex ? step.regex->find_all(piece) : find_literal(piece, step.literal);
          split_by(piece, matches, step.behavior, next);
          break;
        }
        case K::kDigits:
          split_by(piece, digits_regex().find_all(piece),
                   step.individual_digits ? PreTokenizerStep::Behavior::kIsolated
                                          : PreTokenizerStep::Behavior::kContiguous,
                   next);
          break;
        case K::kByteLevel: {
          if (step.add_prefix_space && !piece.starts_with(' ')) piece.insert(piece.begin(), ' ');
          const size_t first = next.size();
          if (step.use_regex) {
            split_by(piece, gpt2_regex().find_all(piece), PreTokenizerStep::Behavior::kIsolated,
                     next);
          } else {
            next.push_back(std::move(piece));
          }
          const auto& chars = byte_level_chars();
          for (size_t k = first; k < next.size(); ++k) {
            std::string mapped;
            mapped.reserve(next[k].size() * 2);
            for (char ch : next[k]) mapped += chars[static_cast<unsigned char>(ch)];
            next[k] = std::move(mapped);
          }
          break;
        }
        case K::kSpmWords: {
          // Cut before each U+2581 that follows another character: "▁a▁▁b" -> "▁a", "▁▁b".
          size_t start = 0;
          for (size_t pos = piece.find(kMetaspaceChar); pos != std::string::npos;
               pos = piece.find(kMetaspaceChar, pos + kMetaspaceChar.size())) {
            const bool after_other = pos > start && !metaspace_before(piece, pos);
            if (after_other) {
              next.push_back(piece.substr(start, pos - start));
              start = pos;
            }
          }
          next.push_back(piece.substr(start));
          break;
        }
        case K::kMetaspace: {
          replace_all(piece, " ", step.replacement);
          const bool first_piece = i == 0 && ctx.at_start;
          const bool prepend = step.prepend == PreTokenizerStep::Prepend::kAlways ||
                               (step.prepend == PreTokenizerStep::Prepend::kFirst && first_piece);
          if (prepend && !piece.starts_with(step.replacement)) piece.insert(0, step.replacement);
          if (step.split) {
            split_by(piece, find_literal(piece, step.replacement),
                     PreTokenizerStep::Behavior::kMergedWithNext, next);
          } else {
            next.push_back(std::move(piece));
          }
          break;
        }
      }
    }
    pieces.swap(next);
  }
  for (Piece& p : pieces) {
    if (!p.empty()) words.push_back(std::move(p));
  }
}

// ---- Decoders ---------------------------------------------------------------------------------

namespace {

void decode_byte_level(std::vector<std::string>& pieces, bool raw) {
  std::string bytes;
  for (const std::string& piece : pieces) {
    // A piece whose characters are all byte-level characters stands for those bytes; any other
    // (an added token such as "<|im_end|>" written with a plain space) is taken as it is.
    std::string mapped;
    bool all = true;
    for (size_t i = 0; i < piece.size();) {
      const size_t n = utf8_sequence_length(piece, i);
      const int b = n == 0 ? -1 : byte_level_byte(decode_utf8(piece, i, n));
      if (b < 0) {
        all = false;
        break;
      }
      mapped += static_cast<char>(b);
      i += n;
    }
    bytes += all ? mapped : piece;
  }
  pieces.assign(1, raw ? std::move(bytes) : utf8_lossy(bytes));
}

void decode_byte_fallback(std::vector<std::string>& pieces, bool raw) {
  std::vector<std::string> out;
  std::string bytes;
  size_t n_bytes = 0;
  const auto flush = [&] {
    if (n_bytes == 0) return;
    if (raw || is_valid_utf8(bytes)) {
      out.push_back(bytes);
    } else {
      // As HF: bytes that do not form valid text become one U+FFFD each.
      std::string repl;
      for (size_t i = 0; i < n_bytes; ++i) repl += "\xEF\xBF\xBD";
      out.push_back(std::move(repl));
    }
    bytes.clear();
    n_bytes = 0;
  };
  for (std::string& piece : pieces) {
    const int b = parse_byte_token(piece);
    if (b >= 0) {
      bytes += static_cast<char>(b);
      ++n_bytes;
    } else {
      flush();
      out.push_back(std::move(piece));
    }
  }
  flush();
  pieces = std::move(out);
}

void decode_strip(std::vector<std::string>& pieces, const DecoderStep& step) {
  std::string ch;
  append_utf8(ch, step.strip_char);
  for (std::string& piece : pieces) {
    size_t begin = 0;
    for (int k = 0; k < step.strip_start && piece.compare(begin, ch.size(), ch) == 0; ++k) {
      begin += ch.size();
    }
    size_t end = piece.size();
    for (int k = 0; k < step.strip_stop && end >= begin + ch.size() &&
                    piece.compare(end - ch.size(), ch.size(), ch) == 0;
         ++k) {
      end -= ch.size();
    }
    piece = piece.substr(begin, end - begin);
  }
}

}  // namespace

std::string apply_decoders(const std::vector<DecoderStep>& steps, std::vector<std::string> pieces,
                           bool raw) {
  if (steps.empty()) {
    std::string out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i > 0 && !raw) out += ' ';
      out += pieces[i];
    }
    return out;
  }
  using K = DecoderStep::Kind;
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case K::kByteLevel:
        decode_byte_level(pieces, raw);
        break;
      case K::kReplace:
        for (std::string& p : pieces) replace_all(p, step.from, step.to);
        break;
      case K::kByteFallback:
        decode_byte_fallback(pieces, raw);
        break;
      case K::kFuse: {
        std::string all;
        for (const std::string& p : pieces) all += p;
        pieces.assign(1, std::move(all));
        break;
      }
      case K::kStrip:
        if (!raw) decode_strip(pieces, step);
        break;
      case K::kMetaspace:
        for (size_t i = 0; i < pieces.size(); ++i) {
          // HF drops the replacement character entirely in the first piece when a prefix was
          // prepended at encoding, and writes ' ' for it everywhere else.
          const bool drop = !raw && i == 0 && step.metaspace_strip_first;
          replace_all(pieces[i], step.replacement, drop ? "" : " ");
        }
        break;
    }
  }
  std::string out;
  for (const std::string& p : pieces) out += p;
  return raw ? out : utf8_lossy(out);
}

}  // namespace shoal::infer
