// Score BPE for SentencePiece-style vocabularies given as pieces + scores (a GGUF "llama"
// vocabulary, llama2.c's tokenizer.bin), as llama.cpp tokenizes them: the word starts as one
// symbol per character; repeatedly, among adjacent pairs whose concatenation is a vocabulary
// piece, the one whose piece has the highest score merges (the leftmost on ties). Each final
// symbol is its piece's id, or, for a character with no piece, its UTF-8 bytes as <0xXX> tokens
// (unk when the vocabulary lacks them).
#include <queue>

#include "infer/tokenizer_impl.h"

namespace shoal::infer {

SpmModel::SpmModel(const PieceMap* vocab, std::vector<float> scores, std::vector<uint8_t> mergeable,
                   int32_t unk_id)
    : vocab_(vocab), scores_(std::move(scores)), mergeable_(std::move(mergeable)), unk_id_(unk_id) {
  byte_ids_.fill(-1);
  static const char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const std::string piece = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
    auto it = vocab_->find(piece);
    if (it != vocab_->end()) byte_ids_[b] = it->second;
  }
}

int32_t SpmModel::find(std::string_view piece) const {
  auto it = vocab_->find(piece);
  if (it == vocab_->end()) return -1;
  const int32_t id = it->second;
  return static_cast<size_t>(id) < mergeable_.size() && mergeable_[id] ? id : -1;
}

void SpmModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  // Symbols are byte ranges of `word` in a doubly linked list; a merged-away symbol has len 0.
  struct Symbol {
    size_t begin, len;
    int prev, next;
  };
  std::vector<Symbol> syms;
  for (size_t i = 0; i < word.size();) {
    size_t n = utf8_sequence_length(word, i);
    if (n == 0) n = 1;
    const int k = static_cast<int>(syms.size());
    syms.push_back({i, n, k - 1, -1});
    if (k > 0) syms[k - 1].next = k;
    i += n;
  }

  struct Candidate {
    float score;
    int left;
    size_t len;  // bytes of the merged piece, to spot candidates made stale by other merges
    bool operator<(const Candidate& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Candidate> heap;  // top: highest score, then leftmost
  const auto consider = [&](int left) {
    if (left < 0) return;
    const int right = syms[left].next;
    if (right < 0) return;
    const size_t len = syms[left].len + syms[right].len;
    const int32_t id = find(word.substr(syms[left].begin, len));
    if (id >= 0) heap.push({scores_[id], left, len});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) consider(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = syms[c.left];
    if (left.len == 0 || left.next < 0 || left.len + syms[left.next].len != c.len) continue;
    const int right = left.next;
    left.len = c.len;
    left.next = syms[right].next;
    if (left.next >= 0) syms[left.next].prev = c.left;
    syms[right].len = 0;
    consider(left.prev);
    consider(c.left);
  }

  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
    const std::string_view piece = word.substr(syms[i].begin, syms[i].len);
    auto it = vocab_->find(piece);
    if (it != vocab_->end()) {
      out.push_back(it->second);
      continue;
    }
    for (char ch : piece) {
      const int32_t id = byte_ids_[static_cast<unsigned char>(ch)];
      if (id >= 0) {
        out.push_back(id);
      } else if (unk_id_ >= 0) {
        out.push_back(unk_id_);
      }
    }
  }
}

}  // namespace shoal::infer
