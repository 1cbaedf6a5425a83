// MinHash over token shingles; see population_novelty.h.
#include "search/population_novelty.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include "shoal/rng.h"

namespace shoal::search {
namespace {

bool word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.';
}

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

std::vector<std::string_view> code_tokens(std::string_view code) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < code.size()) {
    if (std::isspace(static_cast<unsigned char>(code[i])) != 0) {
      ++i;
    } else if (word_char(code[i])) {
      size_t j = i;
      while (j < code.size() && word_char(code[j])) ++j;
      out.push_back(code.substr(i, j - i));
      i = j;
    } else {
      out.push_back(code.substr(i, 1));
      ++i;
    }
  }
  return out;
}

std::vector<uint64_t> shingle_hashes(std::string_view code, int k) {
  const std::vector<std::string_view> tokens = code_tokens(code);
  std::vector<uint64_t> out;
  if (tokens.empty()) return out;
  const size_t n = tokens.size() < static_cast<size_t>(k) ? 1 : tokens.size() - k + 1;
  const size_t width = std::min(tokens.size(), static_cast<size_t>(k));
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t t = 0; t < width; ++t) {
      h = fnv1a(h, tokens[i + t]);
      h = fnv1a(h, "\x1f");  // a separator, so "ab c" and "a bc" differ
    }
    out.push_back(h);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<uint64_t> minhash(std::string_view code, int k, int hashes) {
  const std::vector<uint64_t> shingles = shingle_hashes(code, k);
  std::vector<uint64_t> sig(static_cast<size_t>(hashes), std::numeric_limits<uint64_t>::max());
  for (uint64_t s : shingles) {
    for (int j = 0; j < hashes; ++j) {
      // Function j: a bijective mix of the shingle hash keyed by j.
      const uint64_t v = mix64(s ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(j + 1)));
      if (v < sig[static_cast<size_t>(j)]) sig[static_cast<size_t>(j)] = v;
    }
  }
  return sig;
}

double minhash_similarity(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n == 0) return 1;
  size_t same = 0;
  for (size_t i = 0; i < n; ++i) same += a[i] == b[i] ? 1 : 0;
  return static_cast<double>(same) / static_cast<double>(n);
}

}  // namespace shoal::search
