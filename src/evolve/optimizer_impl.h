// Pieces shared by the optimisers (internal): seeded random draws, the box fold, JSON helpers
// that keep every double bit-exact (non-finite values as strings), and the constructors the
// factory in optimizer.cpp dispatches to.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/optimizer.h"
#include "shoal/rng.h"

namespace shoal::evolve {

// Purposes of the random streams; with the restart and generation they key one stream each.
enum class Stream : uint64_t { kSample = 1, kRestartMean = 2, kGenetic = 3, kInitial = 4 };

// Draws from one counter stream in order. Draws are a pure function of the key and the position,
// so a stream per (purpose, restart, generation, candidate) makes every draw reproducible.
class RandomCursor {
 public:
  RandomCursor(uint64_t seed, Stream purpose, uint64_t restart, uint64_t generation,
               uint64_t candidate)
      : rng_(CounterRng(seed).stream(
            mix64(mix64(mix64(static_cast<uint64_t>(purpose)) + restart) + generation) +
            candidate)) {}
  double uniform() { return rng_.uniform(next_++); }
  // Standard normal by Box-Muller (one value per pair of uniforms; 1 - u keeps the log finite).
  double gaussian() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
  }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) {
    const auto k = static_cast<uint64_t>(uniform() * static_cast<double>(n));
    return k < n ? k : n - 1;
  }

 private:
  CounterRng rng_;
  uint64_t next_ = 0;
};

// Folds x into [lo, hi] by reflection at the bounds; values inside are returned unchanged.
inline double reflect(double x, double lo, double hi) {
  if (x >= lo && x <= hi) return x;
  const double w = hi - lo;
  double y = std::fmod(x - lo, 2.0 * w);
  if (y < 0) y += 2.0 * w;
  if (y > w) y = 2.0 * w - y;
  return lo + y;
}

inline bool bounded(const OptimizerOptions& o) {
  return !o.lower.empty();
}

inline bool inside(const OptimizerOptions& o, const std::vector<double>& x) {
  if (!bounded(o)) return true;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] < o.lower[i] || x[i] > o.upper[i]) return false;
  }
  return true;
}

inline std::vector<double> fold(const OptimizerOptions& o, std::vector<double> x) {
  if (bounded(o)) {
    for (size_t i = 0; i < x.size(); ++i) x[i] = reflect(x[i], o.lower[i], o.upper[i]);
  }
  return x;
}

// Candidate indices sorted by fitness, ties broken by index (deterministic).
std::vector<int> ranking(const std::vector<double>& f);

// --- JSON: doubles round-trip exactly through nlohmann (shortest representation on write,
// correctly rounded strtod on read); inf and nan, which JSON lacks, are written as strings.
nlohmann::json to_json(double x);
nlohmann::json to_json(const std::vector<double>& v);
nlohmann::json to_json(const std::vector<std::vector<double>>& m);

// Readers throw FormatError("optimizer state: <key> ...") on a missing key or a wrong type/size.
const nlohmann::json& member(const nlohmann::json& j, const char* key);
double read_double(const nlohmann::json& j, const char* key);
int64_t read_int(const nlohmann::json& j, const char* key);
std::vector<double> read_vector(const nlohmann::json& j, const char* key, size_t size);
std::vector<std::vector<double>> read_matrix(const nlohmann::json& j, const char* key, size_t rows,
                                             size_t cols);

// Constructors behind make_optimizer / load_optimizer (options already resolved).
std::unique_ptr<Optimizer> make_cmaes(const OptimizerOptions& options);
std::unique_ptr<Optimizer> load_cmaes(const OptimizerOptions& options, const nlohmann::json& j);
std::unique_ptr<Optimizer> make_genetic(const OptimizerOptions& options);
std::unique_ptr<Optimizer> load_genetic(const OptimizerOptions& options, const nlohmann::json& j);

}  // namespace shoal::evolve
