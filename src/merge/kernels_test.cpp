// Tests of the kernels' internals against independent references: the rank-selection engine
// against a brute-force stable sort on every path (collect, all-equal, exact count), and the
// fast conversions against the core's to_f64 / from_f64, bit for bit.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "merge/kernels.h"
#include "merge/select.h"

#include <gtest/gtest.h>

namespace shoal::merge {
namespace {

using kernels::kChunk;

// ---------------------------------------------------------------------------------------------
// The kernels' fast conversions give exactly the core's results.

TEST(KernelConversions, LoadMatchesToF64ForEveryHalf) {
  for (DType t : {DType::kF16, DType::kBF16}) {
    std::vector<uint16_t> all(65536);
    std::iota(all.begin(), all.end(), 0);
    std::vector<double> want(all.size()), got(all.size());
    to_f64(t, all.data(), want.data(), all.size());
    kernels::load_f64(t, all.data(), got.data(), all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint64_t>(got[i]), std::bit_cast<uint64_t>(want[i]))
          << dtype_name(t) << " 0x" << std::hex << i;
    }
    // Finite-only blocks take the fast path; check one on its own.
    std::vector<uint16_t> finite = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xfbff, 0x7bff};
    std::vector<double> w(finite.size()), g(finite.size());
    to_f64(t, finite.data(), w.data(), finite.size());
    kernels::load_f64(t, finite.data(), g.data(), finite.size());
    EXPECT_EQ(g, w);
  }
}

TEST(KernelConversions, StoreMatchesFromF64BitForBit) {
  std::mt19937_64 gen(3);
  std::vector<double> values;
  // Every half/bf16 value, the midpoints between neighbours and points just beside them:
  // exactly where rounding decisions are made.
  for (DType t : {DType::kF16, DType::kBF16}) {
    for (uint32_t h = 0; h < 0xffff; ++h) {
      uint16_t pair[2] = {static_cast<uint16_t>(h), static_cast<uint16_t>(h + 1)};
      double v[2];
      to_f64(t, pair, v, 2);
      if (!std::isfinite(v[0]) || !std::isfinite(v[1])) continue;
      const double mid = v[0] + (v[1] - v[0]) / 2;
      values.insert(values.end(),
                    {v[0], mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e300), -mid});
    }
  }
  // Random doubles across every exponent, with random mantissas.
  for (int i = 0; i < 200000; ++i) values.push_back(std::bit_cast<double>(gen()));
  std::normal_distribution<double> normal;
  for (int i = 0; i < 100000; ++i) values.push_back(normal(gen) * std::ldexp(1.0, i % 80 - 40));
  values.insert(values.end(), {0.0,           -0.0,
                               65504.0,       65519.99,
                               65520.0,       1e300,
                               -1e300,        std::numeric_limits<double>::infinity(),
                               std::nan(""),  std::numeric_limits<double>::denorm_min(),
                               3.4e38,        3.4028235e38,
                               3.40282357e38, 0x1p-126,
                               0x1p-133,      0x1p-134,
                               0x1.8p-134,    0x1p-24,
                               0x1p-25,       0x1.8p-25,
                               0x1p-14});
  for (DType t : {DType::kF16, DType::kBF16, DType::kF32}) {
    const size_t esize = dtype_size(t);
    // Blocks of 16 values: finite blocks take the fast path, blocks with a NaN or an overflow
    // the fallback.
    for (size_t b = 0; b < values.size(); b += 16) {
      const size_t n = std::min<size_t>(16, values.size() - b);
      std::vector<unsigned char> want(n * esize), got(n * esize);
      from_f64(values.data() + b, t, want.data(), n);
      kernels::store_f64(values.data() + b, t, got.data(), n);
      ASSERT_EQ(got, want) << dtype_name(t) << " block at " << b << " first value " << values[b];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The selection engine against brute force, with tiny collect limits to force the histogram and
// exact-count paths.

TEST(SelectRanks, MatchesSortedOrderOnEveryPath) {
  ThreadPool pool(3);
  std::mt19937_64 gen(9);
  const int64_t n = 2 * kChunk + 333;
  // Source 0: five distinct keys (heavy ties); 1: arbitrary 64-bit keys; 2: all equal; 3: two
  // keys that differ only in the last bit (resolved only at 64 bits, then by counting).
  std::vector<std::vector<uint64_t>> src(4, std::vector<uint64_t>(n));
  std::uniform_int_distribution<int> few(0, 4);
  for (int64_t i = 0; i < n; ++i) {
    src[0][i] = kernels::magnitude_key(0.25 * few(gen));
    src[1][i] = gen();
    src[2][i] = kernels::magnitude_key(-1.5);
    src[3][i] = kernels::magnitude_key(0.75) + (i % 3 == 0);
  }
  const kernels::KeyFn keys = [&](int64_t begin, int64_t m, const std::vector<char>& need,
                                  uint64_t* const* out) {
    for (size_t s = 0; s < src.size(); ++s) {
      if (need[s]) std::copy_n(src[s].begin() + begin, m, out[s]);
    }
  };
  std::vector<kernels::RankQuery> queries;
  for (size_t s = 0; s < src.size(); ++s) {
    for (int64_t pos : {int64_t{0}, int64_t{1}, n / 3, n / 2, n - 2, n - 1}) {
      for (bool asc : {true, false}) queries.push_back({s, pos, asc});
    }
  }
  // Brute force: the full order, key ascending, ties by index ascending or descending.
  auto order_of = [&](size_t s, bool asc) {
    std::vector<int64_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    if (!asc) std::reverse(idx.begin(), idx.end());
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int64_t a, int64_t b) { return src[s][a] < src[s][b]; });
    return idx;
  };
  for (int64_t limit : {int64_t{0}, int64_t{1}, int64_t{1000}, kernels::kCollectLimit}) {
    SCOPED_TRACE("collect limit " + std::to_string(limit));
    const auto found = kernels::select_ranks(queries, src.size(), n, keys, pool, {}, limit);
    ASSERT_EQ(found.size(), queries.size());
    for (size_t q = 0; q < queries.size(); ++q) {
      const auto& query = queries[q];
      const auto order = order_of(query.source, query.asc_ties);
      const int64_t want = order[query.position];
      EXPECT_EQ(found[q].index, want) << "query " << q;
      EXPECT_EQ(found[q].key, src[query.source][want]) << "query " << q;
      // Exactly n - position elements sit at or after the threshold.
      int64_t after = 0;
      for (int64_t i = 0; i < n; ++i) after += found[q].at_or_after(src[query.source][i], i);
      EXPECT_EQ(after, n - query.position) << "query " << q;
    }
  }
}

}  // namespace
}  // namespace shoal::merge
