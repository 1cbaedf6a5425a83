// The `shoal evolve` config (YAML) -> EvolveConfig. Every mapping is walked key by key, as in
// recipes and task files, so an unknown or misplaced key is reported with its line. Paths are
// made absolute against the config's folder, so the recipes a run writes work from anywhere.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "evolve/evolve_yaml.h"
#include "shoal/error.h"
#include "shoal/evolve.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using evolve::ConfigReader;
using evolve::contains;
using evolve::Entry;
using evolve::Keys;

const Keys kTopKeys = {"models",  "genome",     "optimizer",         "seed",
                       "fitness", "merge_seed", "quality_diversity", "budget"};
const Keys kModelsKeys = {"base", "experts"};
const Keys kPsKeys = {"merge_method",           "layer_granularity", "filters", "smooth",
                      "allow_negative_weights", "parameters",        "dtype",   "tokenizer_source"};
const Keys kDfsKeys = {"repeats",     "head_model",  "search_scales",
                       "scale_lower", "scale_upper", "max_path_length"};
const Keys kGenomeKeys = {"kind",        "merge_method", "layer_granularity",
                          "filters",     "smooth",       "allow_negative_weights",
                          "parameters",  "dtype",        "tokenizer_source",
                          "repeats",     "head_model",   "search_scales",
                          "scale_lower", "scale_upper",  "max_path_length"};
const Keys kOptimizerKeys = {
    "kind", "sigma0",          "population",     "ipop",        "ipop_factor",   "bounds",
    "x0",   "tournament_size", "crossover_rate", "blend_alpha", "mutation_rate", "elites"};
const Keys kGaOnlyKeys = {"tournament_size", "crossover_rate", "blend_alpha", "mutation_rate",
                          "elites"};
const Keys kCmaOnlyKeys = {"ipop", "ipop_factor"};
const Keys kFitnessKeys = {"tasks",      "split",   "test_split", "limit",
                           "batch_size", "command", "timeout"};
const Keys kTaskKeys = {"file", "weight"};
const Keys kQdKeys = {"axes"};
const Keys kAxisKeys = {"task", "bins", "lower", "upper"};
const Keys kBudgetKeys = {"generations", "evaluations", "wall_time"};

class Parser : ConfigReader {
 public:
  using ConfigReader::ConfigReader;

  EvolveConfig parse(std::string_view text) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      fail(e.mark.line >= 0 ? e.mark.line + 1 : 1, "invalid YAML: " + e.msg);
    }
    if (!root.IsMap()) fail(1, "an evolve config must be a YAML mapping (models, genome, ...)");
    EvolveConfig c;
    c.file = file();
    c.base_dir = base_dir();
    c.text = std::string(text);
    std::optional<Entry> models, genome, optimizer, fitness, budget;
    for (Entry& e : entries(root, kTopKeys, "the config")) {
      if (e.name == "models") models = e;
      if (e.name == "genome") genome = e;
      if (e.name == "optimizer") optimizer = e;
      if (e.name == "fitness") fitness = e;
      if (e.name == "budget") budget = e;
      if (e.name == "seed") c.optimizer.seed = uint_value(e);
      if (e.name == "merge_seed") c.merge_seed = uint_value(e);
      if (e.name == "quality_diversity") parse_qd(e, c);
    }
    if (!models) fail(1, "missing 'models' (base and experts)");
    if (!genome) fail(1, "missing 'genome' (kind, merge_method, ...)");
    if (!fitness) fail(1, "missing 'fitness' (tasks or command)");
    if (!budget) fail(1, "missing 'budget' (generations, evaluations or wall_time)");
    parse_genome(*genome, c);
    parse_models(*models, c);
    if (optimizer) parse_optimizer(*optimizer, c);
    parse_fitness(*fitness, c);
    parse_budget(*budget, c);
    return c;
  }

 private:
  void parse_models(const Entry& m, EvolveConfig& c) const {
    std::optional<std::string> base;
    std::vector<std::string> experts;
    int experts_line = m.line;
    for (const Entry& e : entries(m.value, kModelsKeys, "models")) {
      if (e.name == "base") base = existing_path(string_value(e), e.line, "model");
      if (e.name == "experts") {
        experts_line = e.line;
        for (const auto& s : string_list(e)) experts.push_back(existing_path(s, e.line, "model"));
      }
    }
    if (experts.empty()) fail(experts_line, "models.experts must list at least one model");
    c.ps.base_model = base;
    c.ps.models = experts;
    c.dfs.models = experts;
    if (base) c.dfs.models.insert(c.dfs.models.begin(), *base);
    if (c.genome_kind == GenomeKind::kDfs) return;
    if (c.ps.merge_method == "linear" && base) {
      fail(m.line, "merge_method linear uses no base model; list every model under experts");
    }
    if (c.ps.merge_method != "linear" && !base) {
      fail(m.line, "merge_method " + c.ps.merge_method + " needs models.base");
    }
  }

  void parse_genome(const Entry& g, EvolveConfig& c) const {
    const std::vector<Entry> es = entries(g.value, kGenomeKeys, "genome");
    for (const Entry& e : es) {
      if (e.name != "kind") continue;
      const std::string k = string_value(e);
      if (k == "ps") {
        c.genome_kind = GenomeKind::kPs;
      } else if (k == "dfs") {
        c.genome_kind = GenomeKind::kDfs;
      } else if (k == "ps_then_dfs") {
        c.genome_kind = GenomeKind::kPsThenDfs;
      } else {
        fail(e.line, "unknown genome kind '" + k + "' (expected: ps, dfs, ps_then_dfs)");
      }
    }
    const bool ps = c.genome_kind != GenomeKind::kDfs, dfs = c.genome_kind != GenomeKind::kPs;
    for (const Entry& e : es) {
      if (!ps && contains(kPsKeys, e.name)) {
        fail(e.line, "genome." + e.name + " applies to the ps and ps_then_dfs genomes");
      }
      if (!dfs && contains(kDfsKeys, e.name)) {
        fail(e.line, "genome." + e.name + " applies to the dfs and ps_then_dfs genomes");
      }
      if (e.name == "repeats") c.dfs.repeats = int(int_value(e, 1));
      if (e.name == "head_model") {
        c.dfs.head_model = existing_path(string_value(e), e.line, "genome.head_model");
      }
      if (e.name == "search_scales") c.dfs.search_scales = bool_value(e);
      if (e.name == "scale_lower") c.dfs.scale_lower = number_value(e);
      if (e.name == "scale_upper") c.dfs.scale_upper = number_value(e);
      if (e.name == "max_path_length") c.dfs.max_path_length = int(int_value(e, 0));
      if (e.name == "merge_method") c.ps.merge_method = string_value(e);
      if (e.name == "layer_granularity") c.ps.layer_granularity = int(int_value(e, 0));
      if (e.name == "filters") c.ps.filters = string_list(e);
      if (e.name == "smooth") c.ps.smooth = bool_value(e);
      if (e.name == "allow_negative_weights") c.ps.allow_negative_weights = bool_value(e);
      if (e.name == "dtype") c.ps.dtype = string_value(e);
      if (e.name == "tokenizer_source") {
        const std::string s = string_value(e);
        std::error_code ec;
        const bool is_path = s != "base" && s != "union" && fs::exists(base_dir() / s, ec);
        c.ps.tokenizer_source =
            is_path ? fs::absolute(base_dir() / s).lexically_normal().string() : s;
      }
      if (e.name == "parameters") {
        if (!e.value.IsMap()) fail(e.line, "genome.parameters must be a mapping");
        for (auto it = e.value.begin(); it != e.value.end(); ++it) {
          const std::string name = string_value(it->first, e.line, "a parameter name");
          const int line = line_of(it->first, e.line);
          bool b = false;
          double v = 0;
          if (it->second.IsScalar() && YAML::convert<bool>::decode(it->second, b) &&
              !YAML::convert<double>::decode(it->second, v)) {
            v = b ? 1 : 0;
          } else {
            v = number_value(it->second, line, "genome.parameters." + name);
          }
          if (!c.ps.parameters.emplace(name, v).second) {
            fail(line, "genome.parameters." + name + " appears twice");
          }
        }
      }
    }
    if (ps && c.ps.merge_method.empty()) fail(g.line, "genome.merge_method is required");
  }

  void parse_optimizer(const Entry& o, EvolveConfig& c) const {
    OptimizerOptions& opt = c.optimizer;
    const std::vector<Entry> es = entries(o.value, kOptimizerKeys, "optimizer");
    for (const Entry& e : es) {
      if (e.name != "kind") continue;
      const std::string k = string_value(e);
      if (k == "cmaes") {
        opt.kind = OptimizerKind::kCmaEs;
      } else if (k == "sep_cmaes") {
        opt.kind = OptimizerKind::kSepCmaEs;
      } else if (k == "ga") {
        opt.kind = OptimizerKind::kGenetic;
      } else {
        fail(e.line, "unknown optimizer kind '" + k + "' (expected: cmaes, sep_cmaes, ga)");
      }
    }
    const bool ga = opt.kind == OptimizerKind::kGenetic;
    for (const Entry& e : es) {
      if (ga && contains(kCmaOnlyKeys, e.name)) {
        fail(e.line, "optimizer." + e.name + " applies to cmaes and sep_cmaes, not ga");
      }
      if (!ga && contains(kGaOnlyKeys, e.name)) {
        fail(e.line, "optimizer." + e.name + " applies to ga only");
      }
      if (e.name == "sigma0") opt.sigma0 = number_value(e);
      if (e.name == "population") opt.population = int(int_value(e, 2));
      if (e.name == "ipop") opt.max_restarts = int(int_value(e, 0));
      if (e.name == "ipop_factor") opt.ipop_factor = number_value(e);
      if (e.name == "tournament_size") opt.tournament_size = int(int_value(e, 1));
      if (e.name == "crossover_rate") opt.crossover_rate = number_value(e);
      if (e.name == "blend_alpha") opt.blend_alpha = number_value(e);
      if (e.name == "mutation_rate") opt.mutation_rate = number_value(e);
      if (e.name == "elites") opt.elites = int(int_value(e, 0));
      if (e.name == "bounds") {
        const std::string b = string_value(e);
        if (b == "reflect") {
          opt.bounds = BoundsMode::kReflect;
        } else if (b == "resample") {
          opt.bounds = BoundsMode::kResample;
        } else {
          fail(e.line, "optimizer.bounds must be reflect or resample");
        }
      }
      if (e.name == "x0") {
        if (!e.value.IsSequence()) fail(e.line, "optimizer.x0 must be a list of numbers");
        for (const auto& v : e.value) c.x0.push_back(number_value(v, e.line, "optimizer.x0 item"));
      }
    }
    if (!(opt.sigma0 > 0)) fail(o.line, "optimizer.sigma0 must be > 0");
  }

  void parse_fitness(const Entry& f, EvolveConfig& c) const {
    FitnessOptions& fit = c.fitness;
    bool timeout_set = false;
    for (const Entry& e : entries(f.value, kFitnessKeys, "fitness")) {
      if (e.name == "tasks") parse_tasks(e, fit);
      if (e.name == "split") fit.split = string_value(e);
      if (e.name == "test_split") {
        fit.test_split = e.value.IsNull() ? std::nullopt : std::optional(string_value(e));
      }
      if (e.name == "limit") fit.limit = size_t(int_value(e, 1));
      if (e.name == "batch_size") fit.batch_size = size_t(int_value(e, 1));
      if (e.name == "command") fit.command = string_value(e);
      if (e.name == "timeout") {
        fit.timeout_s = number_value(e);
        timeout_set = true;
        if (!(fit.timeout_s > 0)) fail(e.line, "fitness.timeout must be > 0 seconds");
      }
    }
    if (fit.tasks.empty() == fit.command.empty()) {
      fail(f.line, "fitness needs either tasks (shoal eval task files) or a command, not both");
    }
    if (timeout_set && fit.command.empty()) fail(f.line, "fitness.timeout applies to a command");
    if (fit.test_split && *fit.test_split == fit.split) {
      fail(f.line,
           "fitness.test_split must differ from the split the search sees ('" + fit.split + "')");
    }
  }

  void parse_tasks(const Entry& e, FitnessOptions& fit) const {
    if (!e.value.IsSequence() || e.value.size() == 0) {
      fail(e.line, "fitness.tasks must be a non-empty list of task files");
    }
    for (const auto& item : e.value) {
      const int line = line_of(item, e.line);
      FitnessTask t;
      if (item.IsScalar()) {
        t.file = existing_path(item.Scalar(), line, "task file");
      } else {
        bool has_file = false;
        for (const Entry& k : entries(item, kTaskKeys, "a fitness task")) {
          if (k.name == "file") {
            t.file = existing_path(string_value(k), k.line, "task file");
            has_file = true;
          }
          if (k.name == "weight") t.weight = number_value(k);
        }
        if (!has_file) fail(line, "a fitness task needs 'file'");
      }
      fit.tasks.push_back(std::move(t));
    }
  }

  void parse_qd(const Entry& q, EvolveConfig& c) const {
    for (const Entry& e : entries(q.value, kQdKeys, "quality_diversity")) {
      if (!e.value.IsSequence() || e.value.size() == 0) {
        fail(e.line, "quality_diversity.axes must be a non-empty list");
      }
      for (const auto& item : e.value) {
        ArchiveAxis axis;
        bool has_task = false;
        for (const Entry& k : entries(item, kAxisKeys, "an archive axis")) {
          if (k.name == "task") axis.name = string_value(k), has_task = true;
          if (k.name == "bins") axis.bins = int(int_value(k, 1));
          if (k.name == "lower") axis.lower = number_value(k);
          if (k.name == "upper") axis.upper = number_value(k);
        }
        const int line = line_of(item, e.line);
        if (!has_task) fail(line, "an archive axis needs 'task' (the task whose score it bins)");
        if (!(axis.lower < axis.upper)) fail(line, "an archive axis needs lower < upper");
        c.qd_axes.push_back(std::move(axis));
      }
    }
  }

  void parse_budget(const Entry& b, EvolveConfig& c) const {
    for (const Entry& e : entries(b.value, kBudgetKeys, "budget")) {
      if (e.name == "generations") c.budget.generations = int_value(e, 1);
      if (e.name == "evaluations") c.budget.evaluations = int_value(e, 1);
      if (e.name == "wall_time") {
        c.budget.wall_time_s = number_value(e);
        if (!(c.budget.wall_time_s > 0)) fail(e.line, "budget.wall_time must be > 0 seconds");
      }
    }
    if (c.budget.generations == 0 && c.budget.evaluations == 0 && c.budget.wall_time_s == 0) {
      fail(b.line, "budget needs generations, evaluations or wall_time");
    }
  }
};

}  // namespace

const char* genome_kind_name(GenomeKind kind) {
  switch (kind) {
    case GenomeKind::kPs:
      return "ps";
    case GenomeKind::kDfs:
      return "dfs";
    case GenomeKind::kPsThenDfs:
      return "ps_then_dfs";
  }
  return "?";
}

nlohmann::json EvolveConfig::identity() const {
  nlohmann::json ps_json = {
      {"merge_method", ps.merge_method},
      {"models", ps.models},
      {"base_model", ps.base_model ? nlohmann::json(*ps.base_model) : nullptr},
      {"layer_granularity", ps.layer_granularity},
      {"filters", ps.filters},
      {"allow_negative_weights", ps.allow_negative_weights},
      {"smooth", ps.smooth},
      {"parameters", ps.parameters},
      {"dtype", ps.dtype ? nlohmann::json(*ps.dtype) : nullptr},
      {"tokenizer_source", ps.tokenizer_source ? nlohmann::json(*ps.tokenizer_source) : nullptr}};
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : fitness.tasks) tasks.push_back({{"file", t.file}, {"weight", t.weight}});
  nlohmann::json axes = nlohmann::json::array();
  for (const auto& a : qd_axes) {
    axes.push_back({{"task", a.name}, {"bins", a.bins}, {"lower", a.lower}, {"upper", a.upper}});
  }
  const nlohmann::json dfs_json = {{"models", dfs.models},
                                   {"repeats", dfs.repeats},
                                   {"head_model", dfs.head_model},
                                   {"search_scales", dfs.search_scales},
                                   {"scale_lower", dfs.scale_lower},
                                   {"scale_upper", dfs.scale_upper},
                                   {"max_path_length", dfs.max_path_length}};
  return {{"genome", {{"kind", genome_kind_name(genome_kind)}, {"ps", ps_json}, {"dfs", dfs_json}}},
          {"optimizer", options_to_json(optimizer)},
          {"x0", x0},
          {"merge_seed", merge_seed},
          {"fitness",
           {{"tasks", tasks},
            {"split", fitness.split},
            {"test_split", fitness.test_split ? nlohmann::json(*fitness.test_split) : nullptr},
            {"limit", fitness.limit ? nlohmann::json(*fitness.limit) : nullptr},
            {"batch_size", fitness.batch_size},
            {"command", fitness.command},
            {"timeout", fitness.timeout_s}}},
          {"quality_diversity", axes},
          {"phase_inputs", phase_inputs}};
}

EvolveConfig parse_evolve_config(std::string_view yaml_text, const fs::path& file,
                                 const fs::path& base_dir) {
  return Parser(file, base_dir).parse(yaml_text);
}

EvolveConfig load_evolve_config(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open evolve config " + file.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(errno_message("cannot read evolve config " + file.string()));
  return parse_evolve_config(text.str(), file, fs::absolute(file).parent_path());
}

}  // namespace shoal
