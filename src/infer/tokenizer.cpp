// The encode/decode pipeline shared by every tokenizer source, in Hugging Face `tokenizers`'
// order: added tokens are split off the raw text first (those marked `normalized` are looked for
// again after normalization), each remaining segment is normalized and pre-tokenized into words,
// each word goes through the model (with a cache), and the post-processor's BOS/EOS ids go
// around the result.
#include <algorithm>
#include <cctype>

#include "infer/tokenizer_impl.h"
#include "shoal/error.h"

namespace shoal {

namespace {

using infer::AddedToken;
using infer::SegmentContext;

bool is_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

// Letters, digits, '_' and any non-ASCII byte count as word characters for single_word tokens.
bool is_word_byte(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c >= 0x80 || std::isalnum(c) || c == '_';
}

struct Part {
  std::string_view text;  // empty for a token
  size_t offset = 0;      // where the text (or the token's match) starts
  int32_t id = -1;        // the added token, or -1 for text
};

// Cuts `text` at the added tokens matched in it (normalized ones when `normalized`), leftmost
// first and the longest at a position, as HF's LeftmostLongest Aho-Corasick does.
std::vector<Part> split_added(const Tokenizer::Impl& im, std::string_view text, bool normalized,
                              bool parse_special) {
  std::vector<Part> parts;
  const auto& index = im.added_by_byte[normalized ? 1 : 0];
  size_t text_start = 0;  // start of the text not yet emitted
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (size_t k : index[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = im.added[k];
      if (t.special && !parse_special) continue;
      if (text.compare(i, t.pattern.size(), t.pattern) != 0) continue;
      if (t.single_word &&
          ((i > 0 && is_word_byte(text[i - 1])) ||
           (i + t.pattern.size() < text.size() && is_word_byte(text[i + t.pattern.size()])))) {
        continue;
      }
      hit = &t;
      break;  // the index lists longer patterns first
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t begin = i, end = i + hit->pattern.size();
    if (hit->lstrip) {
      while (begin > text_start && is_space(text[begin - 1])) --begin;
    }
    if (hit->rstrip) {
      while (end < text.size() && is_space(text[end])) ++end;
    }
    if (begin > text_start)
      parts.push_back({text.substr(text_start, begin - text_start), text_start});
    parts.push_back({{}, begin, hit->id});
    text_start = i = end;
  }
  if (text_start < text.size()) parts.push_back({text.substr(text_start), text_start});
  return parts;
}

void encode_word_cached(const Tokenizer::Impl& im, std::string_view word,
                        std::vector<int32_t>& out) {
  if (word.size() > Tokenizer::Impl::kMaxCachedWord) {
    im.model->encode_word(word, out);
    return;
  }
  {
    std::lock_guard lock(im.cache_mutex);
    auto it = im.cache.find(word);
    if (it != im.cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  im.model->encode_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard lock(im.cache_mutex);
  // A full cache starts over: simple, and a working set that fits refills it quickly.
  if (im.cache.size() >= Tokenizer::Impl::kMaxCacheEntries) im.cache.clear();
  im.cache.emplace(std::string(word), std::move(ids));
}

void encode_segment(const Tokenizer::Impl& im, std::string_view text, const SegmentContext& ctx,
                    std::vector<int32_t>& out) {
  std::vector<std::string> words;
  infer::apply_pre_tokenizers(im.pre_tokenizer, text, ctx, words);
  for (const std::string& w : words) encode_word_cached(im, w, out);
}

}  // namespace

void Tokenizer::Impl::finish() {
  for (const AddedToken& t : added) {
    if (t.id < 0) continue;
    if (static_cast<size_t>(t.id) >= pieces.size()) pieces.resize(t.id + 1);
    pieces[t.id] = t.content;
  }
  special.assign(pieces.size(), 0);
  for (AddedToken& t : added) {
    if (t.id < 0) continue;
    special[t.id] = t.special ? 1 : 0;
    added_ids[t.content] = t.id;
    t.pattern = t.normalized ? infer::apply_normalizers(normalizer, t.content, SegmentContext{})
                             : t.content;
  }
  for (auto& index : added_by_byte) {
    for (auto& list : index) list.clear();
  }
  for (size_t k = 0; k < added.size(); ++k) {
    const AddedToken& t = added[k];
    if (t.id < 0 || t.pattern.empty()) continue;
    added_by_byte[t.normalized ? 1 : 0][static_cast<unsigned char>(t.pattern[0])].push_back(k);
  }
  for (auto& index : added_by_byte) {
    for (auto& list : index) {
      std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
        return added[a].pattern.size() > added[b].pattern.size();
      });
    }
  }

  const auto text_of = [&](int32_t id) {
    return id >= 0 && static_cast<size_t>(id) < pieces.size() ? pieces[id] : std::string();
  };
  if (bos_text.empty()) bos_text = text_of(bos);
  if (eos_text.empty()) eos_text = text_of(eos);

  chat_kind =
      chat_template.empty() ? ChatTemplateKind::kNone : infer::detect_chat_template(chat_template);
  if (eos >= 0) stops.push_back(eos);
  // The chat format's end-of-turn token ends a reply even where EOS is another token (Qwen2.5's
  // base config has <|endoftext|> as EOS, its chat turns end with <|im_end|>).
  const char* turn_end = chat_kind == ChatTemplateKind::kChatMl   ? "<|im_end|>"
                         : chat_kind == ChatTemplateKind::kLlama3 ? "<|eot_id|>"
                                                                  : nullptr;
  if (turn_end != nullptr) {
    auto it = added_ids.find(std::string_view(turn_end));
    if (it != added_ids.end()) stops.push_back(it->second);
  }
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
}

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& im = *impl_;
  std::string sanitized;
  if (!infer::is_valid_utf8(text)) {
    sanitized = infer::utf8_lossy(text);
    text = sanitized;
  }
  std::vector<int32_t> out;
  if (add_special) out = im.prefix_ids;
  bool after_token = false;
  for (const Part& raw : split_added(im, text, false, parse_special)) {
    if (raw.id >= 0) {
      out.push_back(raw.id);
      after_token = true;
      continue;
    }
    const SegmentContext ctx{raw.offset == 0, after_token};
    const std::string norm = infer::apply_normalizers(im.normalizer, raw.text, ctx);
    for (const Part& part : split_added(im, norm, true, parse_special)) {
      if (part.id >= 0) {
        out.push_back(part.id);
        after_token = true;
        continue;
      }
      const SegmentContext sub{ctx.at_start && part.offset == 0,
                               part.offset == 0 ? ctx.after_token : true};
      encode_segment(im, part.text, sub, out);
      after_token = false;
    }
  }
  if (add_special) out.insert(out.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& im = *impl_;
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= im.pieces.size() || im.pieces[id].empty()) continue;
    if (skip_special && im.special[id]) continue;
    pieces.push_back(im.pieces[id]);
  }
  return infer::apply_decoders(im.decoder, std::move(pieces), false);
}

std::string Tokenizer::token_text(int32_t id) const {
  const Impl& im = *impl_;
  if (id < 0 || static_cast<size_t>(id) >= im.pieces.size()) return {};
  return infer::apply_decoders(im.decoder, {im.pieces[id]}, true);
}

std::string Tokenizer::token_piece(int32_t id) const {
  const Impl& im = *impl_;
  if (id < 0 || static_cast<size_t>(id) >= im.pieces.size()) return {};
  return im.pieces[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view piece) const {
  const Impl& im = *impl_;
  if (auto it = im.added_ids.find(piece); it != im.added_ids.end()) return it->second;
  if (auto it = im.vocab.find(piece); it != im.vocab.end()) return it->second;
  return std::nullopt;
}

size_t Tokenizer::vocab_size() const {
  return impl_->pieces.size();
}
int32_t Tokenizer::bos_id() const {
  return impl_->bos;
}
int32_t Tokenizer::eos_id() const {
  return impl_->eos;
}
const std::vector<int32_t>& Tokenizer::stop_ids() const {
  return impl_->stops;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

bool Tokenizer::adds_bos() const {
  return impl_->bos >= 0 && !impl_->prefix_ids.empty() && impl_->prefix_ids.front() == impl_->bos;
}

ChatTemplateKind Tokenizer::chat_template_kind() const {
  return impl_->chat_kind;
}

std::string Tokenizer::apply_chat_template(std::span<const ChatMessage> messages,
                                           bool add_generation_prompt) const {
  return infer::render_chat(*impl_, messages, add_generation_prompt);
}

}  // namespace shoal
