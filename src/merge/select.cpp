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
                                    int64_t collect_limit) {
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

    // Per group and action: a histogram or the gathered candidates; per chunk and action: the
    // count of elements equal to the key.
    std::vector<std::vector<uint32_t>> hist(static_cast<size_t>(n_groups) * n_actions);
    std::vector<std::vector<Candidate>> gathered(static_cast<size_t>(n_groups) * n_actions);
    std::vector<int64_t> equal_counts(static_cast<size_t>(n_chunks) * n_actions, 0);
    pool.parallel_for(static_cast<size_t>(n_groups), [&](size_t g) {
      std::vector<uint64_t*> key_ptrs(n_sources, nullptr);
      for (size_t s = 0; s < n_sources; ++s) {
        if (need[s]) key_ptrs[s] = key_scratch(s, kBlock);
      }
      for (size_t a = 0; a < n_actions; ++a) {
        if (actions[a].stage == Stage::kHistogram) hist[g * n_actions + a].assign(kBins, 0);
      }
      const auto [c_first, c_last] = group_chunks(static_cast<int64_t>(g));
      for (int64_t c = c_first; c < c_last; ++c) {
        const int64_t c_end = std::min(numel, (c + 1) * kChunk);
        for (int64_t begin = c * kChunk; begin < c_end; begin += kBlock) {
          const int64_t n = std::min(kBlock, c_end - begin);
          keys(begin, n, need, key_ptrs.data());
          for (size_t a = 0; a < n_actions; ++a) {
            const Action& act = actions[a];
            const uint64_t* k = key_ptrs[act.source];
            switch (act.stage) {
              case Stage::kHistogram: {
                uint32_t* h = hist[g * n_actions + a].data();
                if (act.bits == 0) {
                  for (int64_t i = 0; i < n; ++i) ++h[k[i] >> (64 - kDigitBits)];
                } else {
                  const int shift = 64 - act.bits;
                  const int digit_shift = shift - kDigitBits;
                  for (int64_t i = 0; i < n; ++i) {
                    if ((k[i] >> shift) == act.prefix) ++h[(k[i] >> digit_shift) & (kBins - 1)];
                  }
                }
                break;
              }
              case Stage::kCollect: {
                auto& out = gathered[g * n_actions + a];
                for (int64_t i = 0; i < n; ++i) {
                  if (act.bits == 0 || (k[i] >> (64 - act.bits)) == act.prefix) {
                    out.emplace_back(k[i], begin + i);
                  }
                }
                break;
              }
              case Stage::kCountEqual: {
                int64_t equal = 0;
                for (int64_t i = 0; i < n; ++i) equal += k[i] == act.prefix;
                equal_counts[static_cast<size_t>(c) * n_actions + a] += equal;
                break;
              }
              case Stage::kDone: break;
            }
          }
        }
      }
    });

    // Merge the groups' histograms once per histogram action.
    std::vector<std::vector<uint64_t>> merged(n_actions);
    for (size_t a = 0; a < n_actions; ++a) {
      if (actions[a].stage != Stage::kHistogram) continue;
      merged[a].assign(kBins, 0);
      for (int64_t g = 0; g < n_groups; ++g) {
        const auto& h = hist[g * n_actions + a];
        for (size_t b = 0; b < kBins; ++b) merged[a][b] += h[b];
      }
    }

    for (auto& s : states) {
      if (s.stage == Stage::kDone) continue;
      const size_t a = s.action;
      switch (s.stage) {
        case Stage::kHistogram: {
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
          const bool asc = s.query.asc_ties;
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
          int64_t ordinal = s.query.asc_ties ? s.pos : s.count - 1 - s.pos;
          int64_t c = 0;
          for (;; ++c) {
            const int64_t in_chunk = equal_counts[static_cast<size_t>(c) * n_actions + a];
            if (ordinal < in_chunk) break;
            ordinal -= in_chunk;
          }
          std::vector<char> need_one(n_sources, 0);
          need_one[s.query.source] = 1;
          std::vector<uint64_t*> key_ptrs(n_sources, nullptr);
          key_ptrs[s.query.source] = key_scratch(s.query.source, kBlock);
          const int64_t c_end = std::min(numel, (c + 1) * kChunk);
          int64_t found = -1;
          for (int64_t begin = c * kChunk; begin < c_end && found < 0; begin += kBlock) {
            const int64_t n = std::min(kBlock, c_end - begin);
            keys(begin, n, need_one, key_ptrs.data());
            const uint64_t* k = key_ptrs[s.query.source];
            for (int64_t i = 0; i < n; ++i) {
              if (k[i] == s.prefix && ordinal-- == 0) {
                found = begin + i;
                break;
              }
            }
          }
          s.result = {s.prefix, found, s.query.asc_ties};
          s.stage = Stage::kDone;
          break;
        }
        case Stage::kDone: break;
      }
    }
  }

  std::vector<Threshold> out;
  for (const auto& s : states) out.push_back(s.result);
  return out;
}

}  // namespace shoal::merge::kernels
