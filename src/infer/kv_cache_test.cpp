#include "infer/kv_cache.h"

#include <gtest/gtest.h>

namespace shoal::infer {
namespace {

TEST(KvCache, GrowthKeepsUsedRowsOfKeysAndValues) {
  KvCache cache(2, 3);
  EXPECT_EQ(cache.capacity(), 0);
  cache.reserve(5, 0);
  const int64_t first = cache.capacity();
  EXPECT_GE(first, 5);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t i = 0; i < 5 * 3; ++i) {
      cache.keys(l)[i] = static_cast<float>(100 * l + i);
      cache.values(l)[i] = static_cast<float>(-100 * l - i);
    }
  }
  cache.reserve(first, 5);  // already there: no change
  EXPECT_EQ(cache.capacity(), first);
  cache.reserve(first + 1, 5);
  EXPECT_GE(cache.capacity(), 2 * first);  // geometric growth
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t i = 0; i < 5 * 3; ++i) {
      EXPECT_EQ(cache.keys(l)[i], static_cast<float>(100 * l + i));
      EXPECT_EQ(cache.values(l)[i], static_cast<float>(-100 * l - i));
    }
  }
  EXPECT_EQ(cache.bytes(), static_cast<size_t>(2 * 2 * cache.capacity() * 3) * sizeof(float));
}

}  // namespace
}  // namespace shoal::infer
