// Options, the factory, the state every optimiser shares (counters, best so far) and the JSON
// helpers. The algorithms are in cmaes*.cpp and genetic.cpp.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>

#include "evolve/optimizer_impl.h"
#include "shoal/error.h"

namespace shoal {

using nlohmann::json;

namespace {

std::string num(double x) {
  json j = x;
  return std::isfinite(x) ? j.dump() : (std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"));
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError("optimizer: " + message);
}

}  // namespace

const char* optimizer_kind_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kCmaEs:
      return "cmaes";
    case OptimizerKind::kSepCmaEs:
      return "sep-cmaes";
    case OptimizerKind::kGenetic:
      return "genetic";
  }
  return "?";
}

OptimizerOptions resolve_options(OptimizerOptions o) {
  require(o.dimension >= 1, "dimension must be at least 1, got " + std::to_string(o.dimension));
  const auto n = static_cast<size_t>(o.dimension);
  require(std::isfinite(o.sigma0) && o.sigma0 > 0,
          "sigma0 must be a positive number, got " + num(o.sigma0));
  require(o.lower.size() == o.upper.size(),
          "lower and upper bounds must both be given or both be empty");
  if (!o.lower.empty()) {
    require(o.lower.size() == n, "bounds have " + std::to_string(o.lower.size()) +
                                     " values for dimension " + std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
      require(std::isfinite(o.lower[i]) && std::isfinite(o.upper[i]) && o.lower[i] < o.upper[i],
              "bound " + std::to_string(i) + " must satisfy lower < upper, got [" +
                  num(o.lower[i]) + ", " + num(o.upper[i]) + "]");
    }
  }
  if (o.x0.empty()) {
    o.x0.assign(n, 0.0);
    for (size_t i = 0; i < n && !o.lower.empty(); ++i) o.x0[i] = 0.5 * (o.lower[i] + o.upper[i]);
  }
  require(o.x0.size() == n,
          "x0 has " + std::to_string(o.x0.size()) + " values for dimension " + std::to_string(n));
  for (size_t i = 0; i < n; ++i) {
    require(std::isfinite(o.x0[i]), "x0[" + std::to_string(i) + "] is " + num(o.x0[i]));
    if (!o.lower.empty()) {
      require(o.x0[i] >= o.lower[i] && o.x0[i] <= o.upper[i],
              "x0[" + std::to_string(i) + "] = " + num(o.x0[i]) + " is outside its bounds");
    }
  }
  const int lambda_default = 4 + static_cast<int>(std::floor(3.0 * std::log(double(n))));
  if (o.population == 0) {
    o.population =
        o.kind == OptimizerKind::kGenetic ? std::max(20, lambda_default) : lambda_default;
  }
  require(o.population >= 2, "population must be at least 2, got " + std::to_string(o.population));
  require(o.max_restarts >= 0, "max_restarts must be >= 0");
  require(std::isfinite(o.ipop_factor) && o.ipop_factor >= 1, "ipop_factor must be >= 1");
  require(o.eigen_interval >= 0, "eigen_interval must be >= 0");
  require(o.tol_fun >= 0 && o.tol_x >= 0, "tol_fun and tol_x must be >= 0");
  require(o.tournament_size >= 1, "tournament_size must be at least 1");
  require(o.crossover_rate >= 0 && o.crossover_rate <= 1, "crossover_rate must be in [0, 1]");
  require(o.blend_alpha >= 0 && std::isfinite(o.blend_alpha), "blend_alpha must be >= 0");
  if (o.mutation_rate < 0) o.mutation_rate = 1.0 / double(n);
  require(o.mutation_rate <= 1, "mutation_rate must be in [0, 1]");
  require(o.elites >= 0 && o.elites < o.population,
          "elites must be in [0, population), got " + std::to_string(o.elites));
  return o;
}

void Optimizer::record(const std::vector<std::vector<double>>& population,
                       const std::vector<double>& f) {
  if (population.empty()) {
    throw ConfigError("optimizer: tell() without a population from ask()");
  }
  if (f.size() != population.size()) {
    throw ConfigError("optimizer: tell() got " + std::to_string(f.size()) +
                      " fitness values for a population of " + std::to_string(population.size()));
  }
  for (size_t k = 0; k < f.size(); ++k) {
    if (std::isnan(f[k])) {
      throw ConfigError("optimizer: fitness " + std::to_string(k) +
                        " is NaN (pass +inf for a failed candidate)");
    }
  }
  for (size_t k = 0; k < f.size(); ++k) {
    if (f[k] < best_f_) {
      best_f_ = f[k];
      best_x_ = population[k];
    }
  }
  ++generation_;
  evaluations_ += static_cast<int64_t>(f.size());
}

json Optimizer::save_common() const {
  json j;
  j["format"] = "shoal-optimizer";
  j["version"] = 1;
  j["options"] = options_to_json(options_);
  j["generation"] = generation_;
  j["evaluations"] = evaluations_;
  j["best_x"] = evolve::to_json(best_x_);
  j["best_fitness"] = evolve::to_json(best_f_);
  return j;
}

void Optimizer::load_common(const json& j) {
  generation_ = evolve::read_int(j, "generation");
  evaluations_ = evolve::read_int(j, "evaluations");
  best_f_ = evolve::read_double(j, "best_fitness");
  const size_t n = evolve::member(j, "best_x").size();
  best_x_ = evolve::read_vector(j, "best_x", n == 0 ? 0 : options_.x0.size());
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options) {
  const OptimizerOptions o = resolve_options(options);
  if (o.kind == OptimizerKind::kGenetic) return evolve::make_genetic(o);
  return evolve::make_cmaes(o);
}

std::unique_ptr<Optimizer> load_optimizer(const json& state) {
  if (!state.is_object() || state.value("format", json()) != "shoal-optimizer") {
    throw FormatError("optimizer state: not a shoal optimizer state (\"format\" is missing)");
  }
  if (state.value("version", json()) != 1) {
    throw FormatError("optimizer state: unsupported version " +
                      state.value("version", json()).dump());
  }
  OptimizerOptions o;
  try {
    o = resolve_options(options_from_json(evolve::member(state, "options")));
  } catch (const Error& e) {
    throw FormatError(std::string("optimizer state: ") + e.what());
  }
  try {
    if (o.kind == OptimizerKind::kGenetic) return evolve::load_genetic(o, state);
    return evolve::load_cmaes(o, state);
  } catch (const FormatError& e) {
    const std::string message = e.what();
    if (message.starts_with("optimizer state:")) throw;
    throw FormatError("optimizer state: " + message);
  }
}

json options_to_json(const OptimizerOptions& o) {
  using evolve::to_json;
  return json{{"kind", optimizer_kind_name(o.kind)},
              {"dimension", o.dimension},
              {"x0", to_json(o.x0)},
              {"sigma0", to_json(o.sigma0)},
              {"lower", to_json(o.lower)},
              {"upper", to_json(o.upper)},
              {"bounds", o.bounds == BoundsMode::kReflect ? "reflect" : "resample"},
              {"population", o.population},
              {"seed", o.seed},
              {"max_restarts", o.max_restarts},
              {"ipop_factor", to_json(o.ipop_factor)},
              {"eigen_interval", o.eigen_interval},
              {"tol_fun", to_json(o.tol_fun)},
              {"tol_x", to_json(o.tol_x)},
              {"tournament_size", o.tournament_size},
              {"crossover_rate", to_json(o.crossover_rate)},
              {"blend_alpha", to_json(o.blend_alpha)},
              {"mutation_rate", to_json(o.mutation_rate)},
              {"elites", o.elites}};
}

OptimizerOptions options_from_json(const json& j) {
  using namespace evolve;
  if (!j.is_object()) throw FormatError("optimizer options: expected a JSON object");
  static const std::set<std::string> kKeys = {"kind",           "dimension",   "x0",
                                              "sigma0",         "lower",       "upper",
                                              "bounds",         "population",  "seed",
                                              "max_restarts",   "ipop_factor", "eigen_interval",
                                              "tol_fun",        "tol_x",       "tournament_size",
                                              "crossover_rate", "blend_alpha", "mutation_rate",
                                              "elites"};
  for (const auto& [key, value] : j.items()) {
    if (!kKeys.count(key)) throw FormatError("optimizer options: unknown key '" + key + "'");
  }
  OptimizerOptions o;
  const std::string kind = member(j, "kind").is_string() ? j["kind"].get<std::string>() : "";
  if (kind == "cmaes") {
    o.kind = OptimizerKind::kCmaEs;
  } else if (kind == "sep-cmaes") {
    o.kind = OptimizerKind::kSepCmaEs;
  } else if (kind == "genetic") {
    o.kind = OptimizerKind::kGenetic;
  } else {
    throw FormatError("optimizer options: kind must be cmaes, sep-cmaes or genetic");
  }
  o.dimension = static_cast<int>(read_int(j, "dimension"));
  if (o.dimension < 1) throw FormatError("optimizer options: dimension must be at least 1");
  const auto n = static_cast<size_t>(o.dimension);
  o.x0 = read_vector(j, "x0", n);
  o.sigma0 = read_double(j, "sigma0");
  const bool has_bounds = !member(j, "lower").empty();
  o.lower = read_vector(j, "lower", has_bounds ? n : 0);
  o.upper = read_vector(j, "upper", has_bounds ? n : 0);
  const json& bounds = member(j, "bounds");
  if (bounds != "reflect" && bounds != "resample") {
    throw FormatError("optimizer options: bounds must be reflect or resample");
  }
  o.bounds = bounds == "reflect" ? BoundsMode::kReflect : BoundsMode::kResample;
  o.population = static_cast<int>(read_int(j, "population"));
  if (!member(j, "seed").is_number_unsigned()) {
    throw FormatError("optimizer options: seed must be an unsigned integer");
  }
  o.seed = j["seed"].get<uint64_t>();
  o.max_restarts = static_cast<int>(read_int(j, "max_restarts"));
  o.ipop_factor = read_double(j, "ipop_factor");
  o.eigen_interval = static_cast<int>(read_int(j, "eigen_interval"));
  o.tol_fun = read_double(j, "tol_fun");
  o.tol_x = read_double(j, "tol_x");
  o.tournament_size = static_cast<int>(read_int(j, "tournament_size"));
  o.crossover_rate = read_double(j, "crossover_rate");
  o.blend_alpha = read_double(j, "blend_alpha");
  o.mutation_rate = read_double(j, "mutation_rate");
  o.elites = static_cast<int>(read_int(j, "elites"));
  return o;
}

namespace evolve {

std::vector<int> ranking(const std::vector<double>& f) {
  std::vector<int> order(f.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return f[a] < f[b]; });
  return order;
}

json to_json(double x) {
  if (std::isfinite(x)) return x;
  return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
}

json to_json(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(to_json(x));
  return a;
}

json to_json(const std::vector<std::vector<double>>& m) {
  json a = json::array();
  for (const auto& row : m) a.push_back(to_json(row));
  return a;
}

const json& member(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) {
    throw FormatError(std::string("missing key '") + key + "'");
  }
  return j[key];
}

namespace {

double as_double(const json& v, const char* key) {
  if (v.is_number()) return v.get<double>();
  if (v == "inf") return INFINITY;
  if (v == "-inf") return -INFINITY;
  if (v == "nan") return NAN;
  throw FormatError(std::string("'") + key + "' must be a number");
}

}  // namespace

double read_double(const json& j, const char* key) {
  return as_double(member(j, key), key);
}

int64_t read_int(const json& j, const char* key) {
  const json& v = member(j, key);
  if (!v.is_number_integer()) {
    throw FormatError(std::string("'") + key + "' must be an integer");
  }
  return v.get<int64_t>();
}

std::vector<double> read_vector(const json& j, const char* key, size_t size) {
  const json& v = member(j, key);
  if (!v.is_array() || v.size() != size) {
    throw FormatError(std::string("'") + key + "' must be an array of " + std::to_string(size) +
                      " numbers");
  }
  std::vector<double> out;
  out.reserve(size);
  for (const auto& x : v) out.push_back(as_double(x, key));
  return out;
}

std::vector<std::vector<double>> read_matrix(const json& j, const char* key, size_t rows,
                                             size_t cols) {
  const json& v = member(j, key);
  if (!v.is_array() || v.size() != rows) {
    throw FormatError(std::string("'") + key + "' must have " + std::to_string(rows) + " rows");
  }
  std::vector<std::vector<double>> out;
  for (size_t r = 0; r < rows; ++r) {
    json row_holder = {{key, v[r]}};
    out.push_back(read_vector(row_holder, key, cols));
  }
  return out;
}

}  // namespace evolve
}  // namespace shoal
