// Novelty of a candidate program before it is evaluated (internal to the search layer): MinHash
// signatures of token shingles estimate the Jaccard similarity of two programs' shingle sets.
// Implemented in population_novelty.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shoal::search {

// Tokens: identifiers / numbers (runs of letters, digits, '_' and '.'), and every other
// non-space character alone. Whitespace and layout do not count.
std::vector<std::string_view> code_tokens(std::string_view code);

// The set of shingles (k consecutive tokens) as 64-bit hashes, sorted and unique; a program with
// fewer than k tokens has one shingle of all its tokens (none when it has no token).
std::vector<uint64_t> shingle_hashes(std::string_view code, int k);

// hashes independent min-hashes of the shingle set (fixed hash functions, so signatures stored or
// recomputed anywhere agree).
std::vector<uint64_t> minhash(std::string_view code, int k, int hashes);

// The fraction of equal positions: an unbiased estimate of the Jaccard similarity. Two programs
// without tokens are identical (1).
double minhash_similarity(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);

}  // namespace shoal::search
