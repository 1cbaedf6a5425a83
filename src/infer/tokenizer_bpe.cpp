// Merge-rank BPE, with the semantics of Hugging Face's BPE model: the word starts as one symbol
// per character (unknown characters become byte tokens or unk); then, repeatedly, the adjacent
// pair with the lowest merge rank is merged, the leftmost one on ties. A heap of candidate pairs
// and a linked list of symbols make a word of n characters cost O(n log n), which matters when
// a whole SentencePiece-style text is one word.
#include <queue>

#include "infer/tokenizer_impl.h"

namespace shoal::infer {

BpeModel::BpeModel(const PieceMap* vocab, BpeOptions options) : vocab_(vocab), options_(options) {
  byte_ids_.fill(-1);
  if (options_.byte_fallback) {
    static const char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string piece = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
      auto it = vocab_->find(piece);
      if (it != vocab_->end()) byte_ids_[b] = it->second;
    }
  }
}

bool BpeModel::add_merge(std::string_view left, std::string_view right) {
  const auto a = vocab_->find(left);
  const auto b = vocab_->find(right);
  std::string joined(left);
  joined += right;
  const auto m = vocab_->find(joined);
  if (a == vocab_->end() || b == vocab_->end() || m == vocab_->end()) return false;
  const auto rank = static_cast<int32_t>(merges_.size());
  // A pair listed twice keeps its first (better) rank.
  merges_.try_emplace(key(a->second, b->second), Merge{rank, m->second});
  return true;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (options_.ignore_merges) {
    auto it = vocab_->find(word);
    if (it != vocab_->end()) {
      out.push_back(it->second);
      return;
    }
  }

  // Symbols in a doubly linked list over a vector; a merged-away symbol gets id -1.
  struct Symbol {
    int32_t id;
    int prev, next;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  bool last_unk = false;
  const auto push = [&](int32_t id) {
    const int n = static_cast<int>(syms.size());
    syms.push_back({id, n - 1, -1});
    if (n > 0) syms[n - 1].next = n;
  };
  for (size_t i = 0; i < word.size();) {
    size_t n = utf8_sequence_length(word, i);
    if (n == 0) n = 1;  // cannot happen for sanitized input; keeps the loop finite regardless
    const std::string_view ch = word.substr(i, n);
    i += n;
    auto it = vocab_->find(ch);
    if (it != vocab_->end()) {
      push(it->second);
      last_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : ch) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch) push(byte_ids_[static_cast<unsigned char>(c)]);
        last_unk = false;
        continue;
      }
    }
    if (options_.unk_id >= 0) {
      if (!(options_.fuse_unk && last_unk)) push(options_.unk_id);
      last_unk = true;
    }
  }

  // Candidate merges ordered by (rank, position): the heap top is the lowest rank, leftmost.
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto consider = [&](int left) {
    const int right = syms[left].next;
    if (right < 0) return;
    auto it = merges_.find(key(syms[left].id, syms[right].id));
    if (it != merges_.end()) heap.push({it->second.rank, left, it->second.merged});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) consider(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = syms[c.pos];
    if (left.id < 0 || left.next < 0) continue;
    // Stale when either symbol changed since the candidate was pushed.
    auto it = merges_.find(key(left.id, syms[left.next].id));
    if (it == merges_.end() || it->second.merged != c.merged) continue;
    const int right = left.next;
    left.id = c.merged;
    left.next = syms[right].next;
    if (left.next >= 0) syms[left.next].prev = c.pos;
    syms[right].id = -1;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }

  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace shoal::infer
