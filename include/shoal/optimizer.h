// Black-box optimisers behind one ask/tell interface: CMA-ES (Hansen's tutorial defaults, with
// optional IPOP restarts), separable CMA-ES (Ros & Hansen 2008) for high dimensions, and a simple
// genetic algorithm as a baseline. See docs/EVOLVE.md.
//
// Convention: every optimiser MINIMISES. tell() takes one value per asked candidate, lower is
// better; to maximise a score, pass its negative. +inf marks a failed candidate (it ranks last);
// NaN is an error.
//
// Determinism: all randomness comes from a counter-based generator keyed by (seed, restart,
// generation, candidate), so a run is a pure function of its options and the fitness values it
// is told, whatever the thread count of the caller. save() captures the whole state (the
// distribution, the evolution paths, the pending population, the counters that position the
// random streams); load_optimizer(save()) continues bit-identically.
//
// Implemented in src/evolve/optimizer.cpp (options, JSON, factory), src/evolve/cmaes*.cpp and
// src/evolve/genetic.cpp. Not thread-safe: one thread drives an optimiser.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal {

enum class OptimizerKind {
  kCmaEs,     // full covariance matrix
  kSepCmaEs,  // diagonal covariance matrix, learning rates scaled by (n + 2) / 3
  kGenetic,   // tournament selection, blend crossover, Gaussian mutation, elitism
};

// How candidates are kept inside the box [lower, upper].
enum class BoundsMode {
  // The search distribution lives in unbounded space; each candidate is folded into the box by
  // reflection at the bounds (a triangle wave, period 2 (upper - lower)). A candidate already
  // inside is returned unchanged. The update uses the unfolded samples, so it stays unbiased.
  kReflect,
  // A sample outside the box is drawn again (up to 100 times, then reflected); the update uses
  // the accepted samples. Biases the distribution when the optimum is near a bound.
  kResample,
};

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kCmaEs;
  int dimension = 0;          // number of variables, at least 1
  std::vector<double> x0;     // start point; empty: the box's centre, or all zeros
  double sigma0 = 0.3;        // initial step size (CMA-ES), mutation step (GA); > 0
  std::vector<double> lower;  // box; both empty = unbounded, else `dimension` values each
  std::vector<double> upper;  //   with lower < upper
  BoundsMode bounds = BoundsMode::kReflect;
  int population = 0;  // 0: 4 + floor(3 ln n) (CMA-ES), max(20, that) (GA); >= 2
  uint64_t seed = 0;

  // CMA-ES and sep-CMA-ES.
  int max_restarts = 0;      // IPOP: after a stop condition, restart with the population
  double ipop_factor = 2.0;  //   multiplied by this, up to max_restarts times
  int eigen_interval = 0;    // generations between eigendecompositions; 0: Hansen's
                             //   max(1, floor(1 / (10 n (c1 + cmu))))
  double tol_fun = 1e-12;    // stop: best-of-generation range and population range below
  double tol_x = 1e-12;      // stop: sigma * max(|pc|, sqrt(diag C)) below tol_x * sigma0

  // Genetic algorithm.
  int tournament_size = 3;      // parents are the best of this many, drawn with replacement
  double crossover_rate = 0.9;  // probability that a child is a blend of two parents
  double blend_alpha = 0.5;     // BLX-alpha: gene drawn in [min - a d, max + a d], d = |p1 - p2|
  double mutation_rate = -1;    // per-gene probability of a Gaussian step; < 0: 1 / n
  int elites = 1;               // best candidates copied unchanged into the next generation
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // The candidates of the next generation, each inside the box. Calling ask() again before
  // tell() returns the same population.
  virtual const std::vector<std::vector<double>>& ask() = 0;
  // One fitness per asked candidate, in ask() order; lower is better. Throws ConfigError when no
  // population was asked, when the count differs, or for a NaN.
  virtual void tell(const std::vector<double>& fitness) = 0;

  // True once a stop condition has been met and no restart is left (the genetic algorithm never
  // stops by itself). ask() still works afterwards; it continues from the last state.
  virtual bool done() const = 0;
  // Why the last (re)start stopped, e.g. "tol_fun"; empty before the first stop.
  virtual std::string stop_reason() const = 0;

  // The distribution's centre in the box (CMA-ES), or the best candidate (GA).
  virtual std::vector<double> center() const = 0;
  // Current step size (CMA-ES) or mutation step (GA).
  virtual double sigma() const = 0;
  virtual int population() const = 0;
  virtual int restarts() const { return 0; }

  const OptimizerOptions& options() const { return options_; }
  int dimension() const { return options_.dimension; }
  int64_t generation() const { return generation_; }    // tell() calls so far
  int64_t evaluations() const { return evaluations_; }  // fitness values told so far
  // Best candidate told so far and its fitness (+inf before the first tell).
  const std::vector<double>& best_x() const { return best_x_; }
  double best_fitness() const { return best_f_; }

  // The full state as JSON: {"format": "shoal-optimizer", "version": 1, "options": ..., ...}.
  virtual nlohmann::json save() const = 0;

 protected:
  explicit Optimizer(OptimizerOptions options) : options_(std::move(options)) {}
  // Checks a told fitness vector and updates the counters and the best candidate.
  void record(const std::vector<std::vector<double>>& population, const std::vector<double>& f);
  nlohmann::json save_common() const;
  void load_common(const nlohmann::json& state);

  OptimizerOptions options_;
  int64_t generation_ = 0;
  int64_t evaluations_ = 0;
  std::vector<double> best_x_;
  double best_f_ = std::numeric_limits<double>::infinity();
};

// Checks the options (ConfigError naming the option) and fills in defaults (x0, population).
OptimizerOptions resolve_options(OptimizerOptions options);
std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options);
// Restores an optimiser from save(); throws FormatError for a corrupt or foreign state.
std::unique_ptr<Optimizer> load_optimizer(const nlohmann::json& state);

nlohmann::json options_to_json(const OptimizerOptions& options);
// Unknown keys are errors (FormatError naming the key).
OptimizerOptions options_from_json(const nlohmann::json& j);

const char* optimizer_kind_name(OptimizerKind kind);  // "cmaes", "sep-cmaes", "genetic"

}  // namespace shoal
