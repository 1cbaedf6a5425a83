// Exact, deterministic rank selection over magnitude keys in bounded memory, for the top-k
// sparsifiers (magnitude, magnitude_outliers). A query asks for the element at a given position
// of a total order (key ascending, ties broken by flat index); the answer is a Threshold that
// later passes compare each element against, so no O(numel) mask or sort is ever held.
// Implemented in select.cpp.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "shoal/thread_pool.h"

namespace shoal::merge::kernels {

// Candidates are gathered into memory (16 bytes each) and sorted once at most this many remain.
inline constexpr int64_t kCollectLimit = int64_t{1} << 18;

// The key that orders values by magnitude: the bit pattern of |x|. Non-negative doubles order
// like their bit patterns (and |NaN| sorts above infinity, consistently).
inline uint64_t magnitude_key(double x) {
  return std::bit_cast<uint64_t>(std::fabs(x));
}

// A position in the order "key ascending, ties by flat index ascending (asc_ties) or
// descending (!asc_ties)": the element (key, index) found there.
struct Threshold {
  uint64_t key = 0;
  int64_t index = 0;
  bool asc_ties = true;

  // True if the element (k, i) sits at or after this position in the order.
  bool at_or_after(uint64_t k, int64_t i) const {
    return k > key || (k == key && (asc_ties ? i >= index : i <= index));
  }
};

struct RankQuery {
  size_t source = 0;     // which key stream
  int64_t position = 0;  // 0-based position in the order, < numel
  bool asc_ties = true;
};

// Fills keys[s][0..n) with the keys at flat indices [begin, begin + n) (n <= kBlock) for every
// source s with need[s] != 0. Called from pool threads.
using KeyFn = std::function<void(int64_t begin, int64_t n, const std::vector<char>& need,
                                 uint64_t* const* keys)>;

// Answers every query with passes over the keys (all queries advance together, one pass each
// step): 16-bit radix histograms narrow the candidates (elements sharing the key prefix found so
// far) until at most `collect_limit` remain, which are then gathered and sorted. Many equal keys
// (exact ties, typical of bf16 deltas) are resolved without sorting: a histogram pass also
// records the candidates' key range and per-chunk counts, and once all candidates share one key
// (or a pass has counted the exact key) the answer's index is found by scanning one chunk.
// Results do not depend on the thread count.
// Told after each histogram pass's chunk [begin, end) is done (may be empty).
using ChunkDoneFn = std::function<void(int64_t begin, int64_t end)>;

std::vector<Threshold> select_ranks(std::span<const RankQuery> queries, size_t n_sources,
                                    int64_t numel, const KeyFn& keys, ThreadPool& pool,
                                    const ChunkDoneFn& chunk_done = {},
                                    int64_t collect_limit = kCollectLimit);

}  // namespace shoal::merge::kernels
