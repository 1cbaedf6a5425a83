// Algorithm names and parameters -> a Search. Every parameter is read here, with its default,
// type and range; the normalised set (defaults filled in) is what params() and checkpoints show.
#include <cmath>
#include <memory>
#include <set>
#include <string>

#include "search/abmcts_a.h"
#include "search/abmcts_m.h"
#include "search/baselines.h"
#include "search/mcts.h"
#include "shoal/error.h"
#include "shoal/search.h"

namespace shoal {
namespace {

using nlohmann::json;
using search::ModelSelection;

// Reads one algorithm's parameter object; every read records the key, so finish() can reject
// the keys nobody read.
class ParamReader {
 public:
  ParamReader(const std::string& algorithm, const json& params)
      : where_("search params (" + algorithm + ")"), in_(params) {
    if (!in_.is_object()) throw ConfigError(where_ + ": expected a JSON object of parameters");
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    std::string got = in_.contains(key) ? in_.at(key).dump() : "nothing";
    if (got.size() > 60) got = got.substr(0, 57) + "...";
    throw ConfigError(where_ + ": '" + key + "': expected " + expected + ", got " + got);
  }

  const json* find(const std::string& key) {
    known_.insert(key);
    const auto it = in_.find(key);
    return it == in_.end() || it->is_null() ? nullptr : &*it;
  }

  double number(const std::string& key, double def, double lo, double hi, bool open_lo = false) {
    const json* v = find(key);
    double x = def;
    if (v != nullptr) {
      if (!v->is_number()) fail(key, "a number");
      x = v->get<double>();
    }
    if (!(x <= hi && (open_lo ? x > lo : x >= lo))) {
      fail(key,
           std::string("a number in ") + (open_lo ? "(" : "[") + fmt(lo) + ", " + fmt(hi) + "]");
    }
    out_[key] = x;
    return x;
  }

  int integer(const std::string& key, int def, int lo, int hi) {
    const json* v = find(key);
    int64_t x = def;
    if (v != nullptr) {
      if (!v->is_number_integer()) fail(key, "an integer");
      x = v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX ? INT64_MAX : v->get<int64_t>();
    }
    if (x < lo || x > hi) {
      fail(key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    out_[key] = x;
    return static_cast<int>(x);
  }

  bool boolean(const std::string& key, bool def) {
    const json* v = find(key);
    bool x = def;
    if (v != nullptr) {
      if (!v->is_boolean()) fail(key, "true or false");
      x = v->get<bool>();
    }
    out_[key] = x;
    return x;
  }

  // Index of the value among `options` (the first is the default).
  int choice(const std::string& key, std::initializer_list<const char*> options) {
    const json* v = find(key);
    std::string list;
    for (const char* o : options) list += std::string(list.empty() ? "" : " | ") + "\"" + o + "\"";
    const std::string x = v == nullptr     ? *options.begin()
                          : v->is_string() ? v->get<std::string>()
                                           : std::string();
    int i = 0;
    for (const char* o : options) {
      if (x == o) {
        out_[key] = x;
        return i;
      }
      ++i;
    }
    fail(key, list);
  }

  // A nested object of numbers, e.g. gaussian_prior: {m, kappa, nu, tau_sq}.
  ParamReader nested(const std::string& key) {
    const json* v = find(key);
    return ParamReader(where_ + "." + key, v == nullptr ? json::object() : *v, 0);
  }
  void put(const std::string& key, json value) { out_[key] = std::move(value); }

  json finish() const {
    for (const auto& [key, value] : in_.items()) {
      if (known_.count(key) != 0) continue;
      std::string list;
      for (const std::string& k : known_) list += (list.empty() ? "" : ", ") + k;
      throw ConfigError(where_ + ": unknown key '" + key + "' (expected one of: " + list + ")");
    }
    return out_;
  }

 private:
  ParamReader(std::string where, const json& params, int) : where_(std::move(where)), in_(params) {
    if (!in_.is_object()) throw ConfigError(where_ + ": expected a JSON object");
  }
  static std::string fmt(double x) {
    if (std::isinf(x)) return "inf";
    std::string s = std::to_string(x);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s;
  }

  std::string where_;
  const json in_;
  std::set<std::string> known_;
  json out_ = json::object();
};

constexpr double kInf = INFINITY;
constexpr int kMaxActions = 65536;

std::unique_ptr<Search> make_abmcts_a(const SearchConfig& c) {
  ParamReader r("ab-mcts-a", c.params);
  search::AbMctsAParams p;
  p.distribution = r.choice("distribution", {"gaussian", "beta"}) == 0
                       ? search::Posterior::kGaussian
                       : search::Posterior::kBeta;
  const int sel = r.choice("model_selection", {"thompson", "ucb", "stack"});
  p.model_selection = sel == 0   ? ModelSelection::kThompson
                      : sel == 1 ? ModelSelection::kUcb
                                 : ModelSelection::kStack;
  const bool beta = p.distribution == search::Posterior::kBeta;
  if (const json* v = r.find("prior_means")) {
    const std::string want = std::to_string(c.n_actions) + " numbers in " +
                             (beta ? "(0, 1), one per action" : "[0, 1], one per action");
    if (!v->is_array() || v->size() != static_cast<size_t>(c.n_actions))
      r.fail("prior_means", want);
    for (const json& x : *v) {
      const double m = x.is_number() ? x.get<double>() : NAN;
      if (!(beta ? m > 0.0 && m < 1.0 : m >= 0.0 && m <= 1.0)) r.fail("prior_means", want);
      p.prior_means.push_back(m);
    }
  }
  r.put("prior_means", p.prior_means.empty() ? json() : json(p.prior_means));
  {
    ParamReader g = r.nested("gaussian_prior");
    p.gaussian_prior.m = g.number("m", 0.0, -kInf, kInf);
    p.gaussian_prior.kappa = g.number("kappa", 1.0, 0.0, kInf, true);
    p.gaussian_prior.nu = g.number("nu", 1.0, 0.0, kInf, true);
    p.gaussian_prior.tau_sq = g.number("tau_sq", 0.1, 0.0, kInf, true);
    r.put("gaussian_prior", g.finish());
  }
  {
    ParamReader b = r.nested("beta_prior");
    p.beta_prior.a = b.number("a", 0.5, 0.0, kInf, true);
    p.beta_prior.b = b.number("b", 0.5, 0.0, kInf, true);
    r.put("beta_prior", b.finish());
  }
  p.pending_penalty = r.boolean("pending_penalty", true);
  p.virtual_loss = r.number("virtual_loss", 0.0, 0.0, 1.0);
  return std::make_unique<search::AbMctsA>(p, r.finish(), c.n_actions, c.seed);
}

std::unique_ptr<Search> make_abmcts_m(const SearchConfig& c) {
  ParamReader r("ab-mcts-m", c.params);
  search::AbMctsMParams p;
  p.model.mu_mean = r.number("prior_mean", 0.5, 0.0, 1.0);
  p.model.mu_sd = r.number("mu_sd", 0.2, 0.0, kInf, true);
  p.model.sigma_alpha_scale = r.number("sigma_alpha_scale", 0.2, 0.0, kInf, true);
  p.model.sigma_y_scale = r.number("sigma_y_scale", 0.3, 0.0, kInf, true);
  p.model.sigma_y_min = r.number("sigma_y_min", 0.01, 0.0, 0.5, true);
  p.model_selection = r.choice("model_selection", {"thompson", "ucb"}) == 0
                          ? ModelSelection::kThompson
                          : ModelSelection::kUcb;
  p.pruning = r.boolean("pruning", true);
  p.prune_min_obs = r.integer("prune_min_obs", 4, 1, 1 << 30);
  p.prune_fraction = r.number("prune_fraction", 0.75, 0.0, 1.0, true);
  p.pending_penalty = r.boolean("pending_penalty", true);
  p.virtual_loss = r.number("virtual_loss", 0.0, 0.0, 1.0);
  return std::make_unique<search::AbMctsM>(p, r.finish(), c.n_actions, c.seed);
}

std::unique_ptr<Search> make_mcts(const SearchConfig& c) {
  ParamReader r("mcts", c.params);
  search::MctsParams p;
  p.exploration = r.number("exploration", std::sqrt(2.0), 0.0, kInf);
  p.samples_per_action = r.integer("samples_per_action", 2, 1, 1 << 20);
  p.pending_penalty = r.boolean("pending_penalty", true);
  p.virtual_loss = r.number("virtual_loss", 0.0, 0.0, 1.0);
  return std::make_unique<search::Mcts>(p, r.finish(), c.n_actions, c.seed);
}

search::BaselineParams baseline_params(ParamReader& r, int n_actions) {
  search::BaselineParams p;
  const json* v = r.find("action");
  const std::string want =
      "\"round-robin\" | \"random\" | an action index in [0, " + std::to_string(n_actions) + ")";
  if (v == nullptr || (v->is_string() && v->get<std::string>() == "round-robin")) {
    r.put("action", "round-robin");
  } else if (v->is_string() && v->get<std::string>() == "random") {
    p.action = search::BaselineParams::Action::kRandom;
    r.put("action", "random");
  } else if (v->is_number_integer() && v->get<int64_t>() >= 0 && v->get<int64_t>() < n_actions) {
    p.action = search::BaselineParams::Action::kFixed;
    p.fixed_action = v->get<int>();
    r.put("action", p.fixed_action);
  } else {
    r.fail("action", want);
  }
  return p;
}

std::unique_ptr<Search> make_repeated(const SearchConfig& c) {
  ParamReader r("repeated-sampling", c.params);
  const search::BaselineParams p = baseline_params(r, c.n_actions);
  return std::make_unique<search::RepeatedSampling>(p, r.finish(), c.n_actions, c.seed);
}

std::unique_ptr<Search> make_sequential(const SearchConfig& c) {
  ParamReader r("sequential-refinement", c.params);
  search::BaselineParams p = baseline_params(r, c.n_actions);
  p.refine_best = r.choice("refine", {"latest", "best"}) == 1;
  return std::make_unique<search::SequentialRefinement>(p, r.finish(), c.n_actions, c.seed);
}

struct Entry {
  const char* name;
  std::unique_ptr<Search> (*make)(const SearchConfig&);
};
constexpr Entry kAlgorithms[] = {
    {"ab-mcts-a", make_abmcts_a},
    {"ab-mcts-m", make_abmcts_m},
    {"mcts", make_mcts},
    {"repeated-sampling", make_repeated},
    {"sequential-refinement", make_sequential},
};

}  // namespace

std::vector<std::string> search_algorithms() {
  std::vector<std::string> out;
  for (const Entry& e : kAlgorithms) out.emplace_back(e.name);
  return out;
}

std::unique_ptr<Search> make_search(const SearchConfig& config) {
  if (config.n_actions < 1 || config.n_actions > kMaxActions) {
    throw ConfigError("search: n_actions = " + std::to_string(config.n_actions) +
                      ", expected 1 to " + std::to_string(kMaxActions) + " (one per model)");
  }
  for (const Entry& e : kAlgorithms) {
    if (config.algorithm == e.name) return e.make(config);
  }
  std::string list;
  for (const Entry& e : kAlgorithms) list += std::string(list.empty() ? "" : ", ") + e.name;
  throw ConfigError("search: unknown algorithm '" + config.algorithm +
                    "' (expected one of: " + list + ")");
}

std::unique_ptr<Search> resume_search(const nlohmann::json& cp) {
  if (!cp.is_object() || !cp.contains("format") || cp["format"] != "shoal-search") {
    throw FormatError(
        "search checkpoint: not a shoal search checkpoint (expected \"format\": "
        "\"shoal-search\")");
  }
  if (!cp.contains("version") || cp["version"] != 1) {
    throw FormatError("search checkpoint: version " +
                      (cp.contains("version") ? cp["version"].dump() : std::string("(missing)")) +
                      " is not supported (expected 1)");
  }
  SearchConfig c;
  try {
    c.algorithm = cp.at("algorithm").get<std::string>();
    c.params = cp.at("params");
    const int64_t n = cp.at("n_actions").get<int64_t>();
    c.n_actions = n >= 1 && n <= kMaxActions ? static_cast<int>(n) : 0;
    c.seed = cp.at("seed").get<uint64_t>();
  } catch (const json::exception& e) {
    throw FormatError(std::string("search checkpoint: algorithm, params, n_actions or seed: ") +
                      "missing or of the wrong type (" + e.what() + ")");
  }
  std::unique_ptr<Search> s;
  try {
    s = make_search(c);
  } catch (const ConfigError& e) {
    throw FormatError(std::string("search checkpoint: ") + e.what());
  }
  try {
    dynamic_cast<search::TreeSearch&>(*s).restore(cp);
  } catch (const json::exception& e) {
    throw FormatError(std::string("search checkpoint: ") + e.what());
  }
  return s;
}

}  // namespace shoal
