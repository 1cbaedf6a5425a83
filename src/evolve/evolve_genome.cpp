// The run's genomes. Parameter space: PsGenome writes the recipe, MemoryMerger merges it into
// memory (re-merging only tensors whose parameters changed since the last candidate), and the
// engine reads the tensors in place; run_merge of the same recipe writes the same bytes.
#include "evolve/evolve_genome.h"

#include <cmath>

#include "shoal/error.h"
#include "shoal/merge.h"
#include "shoal/merge_memory.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;

class PsRunGenome final : public RunGenome {
 public:
  PsRunGenome(const EvolveConfig& config, int n_threads)
      : genome_(config.ps, config.base_dir),
        merger_(MemoryMergeOptions{config.merge_seed, n_threads, config.base_dir}),
        merge_seed_(config.merge_seed),
        base_dir_(config.base_dir) {}

  size_t size() const override { return genome_.size(); }
  const std::vector<double>& lower() const override { return genome_.lower(); }
  const std::vector<double>& upper() const override { return genome_.upper(); }
  std::string gene_name(size_t i) const override { return genome_.gene_name(i); }
  std::string layout() const override {
    const auto plural = [](int n, const char* what) {
      return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
    };
    return plural(genome_.n_groups(), "layer group") + " x " +
           plural(genome_.n_model_slots(), "model") + " x " +
           plural(genome_.n_filter_sets(), "filter set") + " x " +
           plural(int(genome_.param_names().size()), "parameter");
  }

  void check(const std::vector<double>& genome) const override {
    MergeOptions o;
    o.out_dir = base_dir_ / "unused";  // only checked, never written
    o.force = true;
    o.seed = merge_seed_;
    o.recipe_dir = base_dir_;
    check_merge(genome_.decode(genome), o);
  }

  // From the folder the planner takes it from: tokenizer_source when it names a model, else
  // the base model, else the first model.
  Tokenizer tokenizer() const override {
    const PsGenomeOptions& o = genome_.options();
    fs::path dir = o.base_model ? *o.base_model : o.models.front();
    if (o.tokenizer_source && *o.tokenizer_source != "base" && *o.tokenizer_source != "union") {
      dir = *o.tokenizer_source;
    }
    if (!fs::exists(dir / "tokenizer.json")) {
      throw ConfigError("evolve: the candidates' tokenizer folder " + dir.string() +
                        " has no tokenizer.json (needed by fitness.tasks)");
    }
    return Tokenizer::from_folder(dir);
  }

  Model load_model(const std::vector<double>& genome, const ModelOptions& options) override {
    std::shared_ptr<const MemoryModel> merged = merger_.merge(genome_.decode(genome));
    return Model::load(memory_model_weights(std::move(merged), "candidate merged in memory"),
                       options);
  }

  void write_model(const std::vector<double>& genome, const fs::path& out_dir, int n_threads,
                   bool force, const std::atomic<bool>* cancel) override {
    MergeOptions o;
    o.out_dir = out_dir;
    o.seed = merge_seed_;
    o.n_threads = n_threads;
    o.force = force;
    o.log_mode = LogMode::kQuiet;
    o.recipe_dir = base_dir_;
    o.cancel = cancel;
    run_merge(genome_.decode(genome), o);
  }

  std::optional<std::string> recipe_yaml(const std::vector<double>& genome) const override {
    return genome_.to_yaml(genome);
  }

  // Each (model, filter set, parameter) as a curve over the layers: a group's value on its
  // layers, or with `smooth` the gradient interpolated as the planner does (t = l / (L - 1)).
  std::vector<LayerSeries> layer_series(const std::vector<double>& genome) const override {
    const PsGenomeOptions& o = genome_.options();
    const int n_layers = genome_.n_layers();
    const int n_groups = genome_.n_groups();
    std::vector<LayerSeries> out;
    for (int slot = 0; slot < genome_.n_model_slots(); ++slot) {
      for (int set = 0; set < genome_.n_filter_sets(); ++set) {
        for (size_t p = 0; p < genome_.param_names().size(); ++p) {
          LayerSeries s;
          s.name = fs::path(o.models[slot]).filename().string() + " / " +
                   (set < int(o.filters.size()) ? o.filters[set] : std::string("*")) + " / " +
                   genome_.param_names()[p];
          for (int l = 0; l < n_layers; ++l) {
            const auto at = [&](int g) { return genome[genome_.index(g, slot, set, int(p))]; };
            if (!o.smooth || n_groups == 1) {
              int g = 0;
              while (genome_.groups()[g].second <= l) ++g;
              s.values.push_back(at(g));
            } else {
              const double t = n_layers > 1 ? double(l) / double(n_layers - 1) : 1.0;
              const double x = t * (n_groups - 1);
              const int i = std::min(int(std::floor(x)), n_groups - 2);
              s.values.push_back(at(i) + (x - i) * (at(i + 1) - at(i)));
            }
          }
          out.push_back(std::move(s));
        }
      }
    }
    return out;
  }

 private:
  PsGenome genome_;
  MemoryMerger merger_;
  uint64_t merge_seed_;
  fs::path base_dir_;
};

}  // namespace

std::unique_ptr<RunGenome> make_run_genome(const EvolveConfig& config, int n_threads) {
  switch (config.genome_kind) {
    case GenomeKind::kPs:
      return std::make_unique<PsRunGenome>(config, n_threads);
    case GenomeKind::kDfs: {
      std::vector<std::shared_ptr<const WeightSource>> sources;
      for (const auto& m : config.dfs.models) sources.push_back(open_weights(m));
      return make_dfs_run_genome(config, std::move(sources));
    }
    case GenomeKind::kPsThenDfs:
      break;
  }
  throw ConfigError("evolve: a ps_then_dfs run builds one genome per phase");
}

}  // namespace shoal::evolve
