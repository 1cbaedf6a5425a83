#include "merge/select.h"

#include <algorithm>

#include "merge/kernels.h"

namespace shoal::merge::kernels {
namespace {

constexpr int kDigitBits = 16;
constexpr size_t kBins = size_t{1} << kDigitBits;

enum class Stage { kHistogram, kCollect, kCountEqual, kDone };

struct QueryState {
  RankQuery query;
  uint64_t prefix = 0;  // the high `bits` bits of every candidate's key
  int bits = 0;
  int64_t pos = 0;    // position among the candidates
  int64_t count = 0;  // number of candidates
  Stage stage = Stage::kHistogram;
  size_t action = 0;  // this pass's action
  Threshold result;
};

// One piece of work of a pass; queries in the same state share it.
struct Action {
  size_t source;
  Stage stage;
  uint64_t prefix;
  int bits;
  bool operator==(const Action&) const = default;
};

using Candidate = std::pair<uint64_t, int64_t>;  // (key, flat index)

Stage next_stage(const QueryState& q, int64_t collect_limit) {
  if (q.count <= collect_limit) return Stage::kCollect;
  if (q.bits == 64) return Stage::kCountEqual;
  return Stage::kHistogram;
}

}  // namespace

std::vector<Threshold> select_ranks(std::span<const RankQuery> queries, size_t n_sources,
                                    int64_t numel, const KeyFn& keys, ThreadPool& pool,
                                    const ChunkDoneFn& chunk_done, int64_t collect_limit) {
  std::vector<QueryState> states(queries.size());
  for (size_t q = 0; q < queries.size(); ++q) {
    states[q].query = queries[q];
    states[q].pos = queries[q].position;
    states[q].count = numel;
    states[q].stage = next_stage(states[q], collect_limit);
  }
  const int64_t n_chunks = ceil_div(numel, kChunk);
  // Work is split into groups of whole chunks, each with its own histograms; histogram counts
  // are integers, so merging them in any order gives the same totals. uint32 bins need groups
  // under 2^32 elements.
  int64_t n_groups = std::min<int64_t>(n_chunks, std::max(pool.size(), 1));
  n_groups = std::max(n_groups, ceil_div(numel, int64_t{1} << 31));
  auto group_chunks = [&](int64_t g) {
    return std::pair{g * n_chunks / n_groups, (g + 1) * n_chunks / n_groups};
  };

  for (;;) {
    std::vector<Action> actions;
    for (auto& s : states) {
      if (s.stage == Stage::kDone) continue;
      const Action a{s.query.source, s.stage, s.prefix, s.bits};
      auto it = std::find(actions.begin(), actions.end(), a);
      s.action = static_cast<size_t>(it - actions.begin());
      if (it == actions.end()) actions.push_back(a);
    }
    if (actions.empty()) break;
    const size_t n_actions = actions.size();
    std::vector<char> need(n_sources, 0);
    for (const auto& a : actions) need[a.source] = 1;

    // Per group and action: a histogram (two halves, see below) and the smallest and largest
    // candidate key, or the gathered candidates. Per chunk and action: how many candidates
    // (histogram) or elements equal to the key (count) it holds.
    const size_t n_slots = static_cast<size_t>(n_groups) * n_actions;
    std::vector<std::vector<uint32_t>> hist(n_slots);
    std::vector<uint64_t> cand_min(n_slots, ~uint64_t{0}), cand_max(n_slots, 0);
    std::vector<std::vector<Candidate>> gathered(n_slots);
    std::vector<int64_t> chunk_counts(static_cast<size_t>(n_chunks) * n_actions, 0);
    pool.parallel_for(static_cast<size_t>(n_groups), [&](size_t g) {
      std::vector<uint64_t*> key_ptrs(n_sources, nullptr);
      for (size_t s = 0; s < n_sources; ++s) {
        if (need[s]) key_ptrs[s] = key_scratch(s, kBlock);
      }
      for (size_t a = 0; a < n_actions; ++a) {
        if (actions[a].stage == Stage::kHistogram) hist[g * n_actions + a].assign(2 * kBins, 0);
      }
      const auto [c_first, c_last] = group_chunks(static_cast<int64_t>(g));
      for (int64_t c = c_first; c < c_last; ++c) {
        const int64_t c_end = std::min(numel, (c + 1) * kChunk);
        for (int64_t begin = c * kChunk; begin < c_end; begin += kBlock) {
          const int64_t n = std::min(kBlock, c_end - begin);
          keys(begin, n, need, key_ptrs.data());
          for (size_t a = 0; a < n_actions; ++a) {
            // Locals, so the compiler need not reload them after every store.
            const size_t slot = g * n_actions + a;
            const uint64_t prefix = actions[a].prefix;
            const int bits = actions[a].bits;
            const uint64_t* k = key_ptrs[actions[a].source];
            int64_t& chunk_count = chunk_counts[static_cast<size_t>(c) * n_actions + a];
            switch (actions[a].stage) {
              case Stage::kHistogram: {
                uint32_t* h = hist[slot].data();
                if (bits == 0) {
                  // Every element counts: alternate two histograms so that runs of equal
                  // bins do not serialise on one counter.
                  uint32_t* h2 = h + kBins;
                  int64_t i = 0;
                  for (; i + 2 <= n; i += 2) {
                    ++h[k[i] >> (64 - kDigitBits)];
                    ++h2[k[i + 1] >> (64 - kDigitBits)];
                  }
                  if (i < n) ++h[k[i] >> (64 - kDigitBits)];
                } else {
                  // Also the candidates' key range and count per chunk: if they all turn out
                  // equal (big exact ties, common in bf16 deltas), no further pass is needed.
                  const int shift = 64 - bits;
                  const int digit_shift = shift - kDigitBits;
                  uint64_t lo = cand_min[slot], hi = cand_max[slot];
                  // Candidates sit at unpredictable positions: gather them without branches
                  // (store every key, advance over the matches), then count only those.
                  uint64_t* cand = key_scratch(n_sources, kBlock);
                  int64_t m = 0;
                  for (int64_t i = 0; i < n; ++i) {
                    cand[m] = k[i];
                    m += (k[i] >> shift) == prefix;
                  }
                  for (int64_t i = 0; i < m; ++i) {
                    ++h[(cand[i] >> digit_shift) & (kBins - 1)];
                    lo = std::min(lo, cand[i]);
                    hi = std::max(hi, cand[i]);
                  }
                  cand_min[slot] = lo;
                  cand_max[slot] = hi;
                  chunk_count += m;
                }
                break;
              }
              case Stage::kCollect: {
                auto& out = gathered[slot];
                const int shift = 64 - bits;
                for (int64_t i = 0; i < n; ++i) {
                  if (bits == 0 || (k[i] >> shift) == prefix) out.emplace_back(k[i], begin + i);
                }
                break;
              }
              case Stage::kCountEqual: {
                int64_t equal = 0;
                for (int64_t i = 0; i < n; ++i) equal += k[i] == prefix;
                chunk_count += equal;
                break;
              }
              case Stage::kDone:
                break;
            }
          }
        }
        if (chunk_done) chunk_done(c * kChunk, c_end);
      }
    });

    // The element with `key` of the given ordinal (0-based, index order) among those counted per
    // chunk by action a: find its chunk from the counts, then scan that one chunk.
    auto find_equal = [&](size_t a, size_t source, uint64_t key, int64_t ordinal) {
      int64_t c = 0;
      while (ordinal >= chunk_counts[static_cast<size_t>(c) * n_actions + a]) {
        ordinal -= chunk_counts[static_cast<size_t>(c) * n_actions + a];
        ++c;
      }
      std::vector<char> need_one(n_sources, 0);
      need_one[source] = 1;
      std::vector<uint64_t*> key_ptrs(n_sources, nullptr);
      key_ptrs[source] = key_scratch(source, kBlock);
      const int64_t c_end = std::min(numel, (c + 1) * kChunk);
      for (int64_t begin = c * kChunk; begin < c_end; begin += kBlock) {
        const int64_t n = std::min(kBlock, c_end - begin);
        keys(begin, n, need_one, key_ptrs.data());
        const uint64_t* k = key_ptrs[source];
        for (int64_t i = 0; i < n; ++i) {
          if (k[i] == key && ordinal-- == 0) return begin + i;
        }
      }
      return int64_t{-1};  // unreachable: the counts came from the same keys
    };

    // Merge the groups' histograms and key ranges once per histogram action.
    std::vector<std::vector<uint64_t>> merged(n_actions);
    std::vector<uint64_t> all_min(n_actions, ~uint64_t{0}), all_max(n_actions, 0);
    for (size_t a = 0; a < n_actions; ++a) {
      if (actions[a].stage != Stage::kHistogram) continue;
      merged[a].assign(kBins, 0);
      for (int64_t g = 0; g < n_groups; ++g) {
        const size_t slot = g * n_actions + a;
        const auto& h = hist[slot];
        for (size_t b = 0; b < kBins; ++b) merged[a][b] += h[b] + h[kBins + b];
        all_min[a] = std::min(all_min[a], cand_min[slot]);
        all_max[a] = std::max(all_max[a], cand_max[slot]);
      }
    }

    for (auto& s : states) {
      if (s.stage == Stage::kDone) continue;
      const size_t a = s.action;
      const bool asc = s.query.asc_ties;
      switch (s.stage) {
        case Stage::kHistogram: {
          if (s.bits > 0 && all_min[a] == all_max[a]) {
            // Every candidate has the same key: the answer is the one of the right rank by
            // index, found from this pass's per-chunk candidate counts.
            const int64_t ordinal = asc ? s.pos : s.count - 1 - s.pos;
            s.result = {all_min[a], find_equal(a, s.query.source, all_min[a], ordinal), asc};
            s.stage = Stage::kDone;
            break;
          }
          // The bin holding position `pos`: every candidate in a lower bin has a smaller key.
          const auto& h = merged[a];
          int64_t below = 0;
          size_t bin = 0;
          while (below + static_cast<int64_t>(h[bin]) <= s.pos) below += h[bin++];
          s.prefix = (s.prefix << kDigitBits) | bin;  // bits == 0: prefix is 0, shift is harmless
          s.bits += kDigitBits;
          s.pos -= below;
          s.count = static_cast<int64_t>(h[bin]);
          s.stage = next_stage(s, collect_limit);
          break;
        }
        case Stage::kCollect: {
          std::vector<Candidate> all;
          for (int64_t g = 0; g < n_groups; ++g) {
            const auto& part = gathered[g * n_actions + a];
            all.insert(all.end(), part.begin(), part.end());
          }
          auto before = [asc](const Candidate& x, const Candidate& y) {
            if (x.first != y.first) return x.first < y.first;
            return asc ? x.second < y.second : x.second > y.second;
          };
          std::nth_element(all.begin(), all.begin() + s.pos, all.end(), before);
          s.result = {all[s.pos].first, all[s.pos].second, asc};
          s.stage = Stage::kDone;
          break;
        }
        case Stage::kCountEqual: {
          // All candidates share the key; find the one with the right rank by index.
          const int64_t ordinal = asc ? s.pos : s.count - 1 - s.pos;
          s.result = {s.prefix, find_equal(a, s.query.source, s.prefix, ordinal), asc};
          s.stage = Stage::kDone;
          break;
        }
        case Stage::kDone:
          break;
      }
    }
  }

  std::vector<Threshold> out;
  for (const auto& s : states) out.push_back(s.result);
  return out;
}

}  // namespace shoal::merge::kernels
