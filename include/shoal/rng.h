// Counter-based random numbers: the value at position i of a stream is a pure function of
// (key, i), so any thread may compute any element and results never depend on the thread count
// or the order of work. The mixer is SplitMix64's finaliser (Steele, Lea, Flood 2014), which
// passes BigCrush when applied to a Weyl sequence as here.
#pragma once

#include <cstdint>
#include <string_view>

namespace shoal {

// SplitMix64's output function.
constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// FNV-1a, 64 bit: a stable hash of names (tensor names, model paths) to derive stream keys.
constexpr uint64_t hash_name(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

class CounterRng {
 public:
  // Derives an independent stream from a user seed and any number of stream ids.
  constexpr explicit CounterRng(uint64_t seed) : key_(mix64(seed + 0x9e3779b97f4a7c15ull)) {}
  constexpr CounterRng stream(uint64_t id) const { return CounterRng(key_ ^ mix64(id), 0); }

  constexpr uint64_t bits(uint64_t i) const {
    return mix64(key_ + (i + 1) * 0x9e3779b97f4a7c15ull);
  }
  // Uniform in [0, 1) with 53 random bits.
  constexpr double uniform(uint64_t i) const {
    return static_cast<double>(bits(i) >> 11) * 0x1p-53;
  }
  constexpr uint64_t key() const { return key_; }

 private:
  constexpr CounterRng(uint64_t key, int) : key_(key) {}
  uint64_t key_;
};

}  // namespace shoal
