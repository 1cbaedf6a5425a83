// A simple real-coded genetic algorithm, the baseline for the CMA-ES: the first population is x0
// and Gaussian perturbations of it (step sigma0); each next one keeps the `elites` best
// candidates unchanged and fills the rest with children of two tournament-selected parents,
// blended (BLX-alpha) with probability crossover_rate, else a copy of the first parent, then
// mutated gene by gene (probability mutation_rate, step sigma0 N(0, 1)). Candidates are folded
// into the box by reflection (BoundsMode does not apply: there is no distribution to bias).
#include <algorithm>
#include <cmath>

#include "evolve/optimizer_impl.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

using nlohmann::json;

class Genetic final : public Optimizer {
 public:
  explicit Genetic(const OptimizerOptions& o) : Optimizer(o) {}

  Genetic(const OptimizerOptions& o, const json& j) : Optimizer(o) {
    load_common(j);
    const auto n = static_cast<size_t>(o.dimension), size = static_cast<size_t>(o.population);
    asked_ = member(j, "asked").get<bool>();
    if (asked_) population_ = read_matrix(j, "population", size, n);
    const bool has_parents = !member(j, "parent_fitness").empty();
    if (has_parents != (generation_ > 0)) {
      throw FormatError("optimizer state: parents must be present after the first generation");
    }
    parents_ = read_matrix(j, "parents", has_parents ? size : 0, n);
    parent_f_ = read_vector(j, "parent_fitness", has_parents ? size : 0);
  }

  const std::vector<std::vector<double>>& ask() override {
    if (asked_) return population_;
    population_.clear();
    if (parents_.empty()) {
      initial();
    } else {
      breed();
    }
    asked_ = true;
    return population_;
  }

  void tell(const std::vector<double>& fitness) override {
    record(asked_ ? population_ : std::vector<std::vector<double>>{}, fitness);
    parents_ = std::move(population_);
    parent_f_ = fitness;
    population_.clear();
    asked_ = false;
  }

  bool done() const override { return false; }
  std::string stop_reason() const override { return {}; }
  std::vector<double> center() const override { return best_x_.empty() ? options_.x0 : best_x_; }
  double sigma() const override { return options_.sigma0; }
  int population() const override { return options_.population; }

  json save() const override {
    json j = save_common();
    j["asked"] = asked_;
    j["population"] = to_json(population_);
    j["parents"] = to_json(parents_);
    j["parent_fitness"] = to_json(parent_f_);
    return j;
  }

 private:
  void initial() {
    const int n = options_.dimension;
    population_.push_back(options_.x0);
    for (int k = 1; k < options_.population; ++k) {
      RandomCursor rnd(options_.seed, Stream::kInitial, 0, 0, k);
      std::vector<double> x = options_.x0;
      for (int i = 0; i < n; ++i) x[i] += options_.sigma0 * rnd.gaussian();
      population_.push_back(fold(options_, std::move(x)));
    }
  }

  // Best of tournament_size parents drawn with replacement (ties: the lower index).
  int tournament(RandomCursor& rnd) const {
    int best = -1;
    for (int t = 0; t < options_.tournament_size; ++t) {
      const int k = static_cast<int>(rnd.below(parents_.size()));
      if (best < 0 || parent_f_[k] < parent_f_[best] ||
          (parent_f_[k] == parent_f_[best] && k < best)) {
        best = k;
      }
    }
    return best;
  }

  void breed() {
    const int n = options_.dimension;
    const std::vector<int> order = ranking(parent_f_);
    for (int e = 0; e < options_.elites; ++e) population_.push_back(parents_[order[e]]);
    for (int c = options_.elites; c < options_.population; ++c) {
      RandomCursor rnd(options_.seed, Stream::kGenetic, 0, generation_, c);
      const std::vector<double>& p1 = parents_[tournament(rnd)];
      const std::vector<double>& p2 = parents_[tournament(rnd)];
      std::vector<double> child = p1;
      if (rnd.uniform() < options_.crossover_rate) {
        for (int i = 0; i < n; ++i) {
          const double lo = std::min(p1[i], p2[i]), hi = std::max(p1[i], p2[i]);
          const double d = hi - lo, a = options_.blend_alpha;
          child[i] = lo - a * d + rnd.uniform() * (1 + 2 * a) * d;
        }
      }
      for (int i = 0; i < n; ++i) {
        if (rnd.uniform() < options_.mutation_rate) child[i] += options_.sigma0 * rnd.gaussian();
      }
      population_.push_back(fold(options_, std::move(child)));
    }
  }

  bool asked_ = false;
  std::vector<std::vector<double>> population_;  // asked, awaiting fitness
  std::vector<std::vector<double>> parents_;     // the last evaluated population
  std::vector<double> parent_f_;
};

}  // namespace

std::unique_ptr<Optimizer> make_genetic(const OptimizerOptions& options) {
  return std::make_unique<Genetic>(options);
}

std::unique_ptr<Optimizer> load_genetic(const OptimizerOptions& options, const json& j) {
  try {
    return std::make_unique<Genetic>(options, j);
  } catch (const json::exception& e) {
    throw FormatError(std::string("optimizer state: ") + e.what());
  }
}

}  // namespace shoal::evolve
