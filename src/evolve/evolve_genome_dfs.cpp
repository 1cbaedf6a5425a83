// The data-flow-space genome as the run sees it: DfsGenome decodes a vector into a LayerPath and
// builds the candidate as views into the source models' layers (nothing merged or written); the
// best path is written as a plain model folder (write_dfs_model), as JSON, and as a passthrough
// recipe when one is exact.
#include <cmath>

#include "evolve/evolve_genome.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;

class DfsRunGenome final : public RunGenome {
 public:
  DfsRunGenome(const EvolveConfig& config, std::vector<std::shared_ptr<const WeightSource>> sources)
      : genome_(config.dfs, sources), sources_(std::move(sources)) {}

  size_t size() const override { return genome_.size(); }
  const std::vector<double>& lower() const override { return genome_.lower(); }
  const std::vector<double>& upper() const override { return genome_.upper(); }
  std::string gene_name(size_t i) const override { return genome_.gene_name(i); }
  std::string layout() const override {
    std::string s = std::to_string(genome_.n_slots()) + " slot indicators (" +
                    std::to_string(genome_.total_layers()) + " layers x " +
                    std::to_string(genome_.options().repeats) + " repeats)";
    if (genome_.options().search_scales) {
      s += " + " + std::to_string(genome_.size() - size_t(genome_.n_slots())) + " input scales";
    }
    return s;
  }
  std::vector<double> start() const override { return genome_.initial(); }

  void check(const std::vector<double>& genome) const override { genome_.decode(genome); }
  Tokenizer tokenizer() const override { return genome_.tokenizer(); }

  Model load_model(const std::vector<double>& genome, const ModelOptions& options) override {
    return genome_.load(genome_.decode(genome), options);
  }

  void write_model(const std::vector<double>& genome, const fs::path& out_dir, int /*n_threads*/,
                   bool force, const std::atomic<bool>* /*cancel*/) override {
    std::error_code ec;
    if (force) fs::remove_all(out_dir, ec);
    write_dfs_model(sources_, genome_.decode(genome), out_dir);
  }

  // A passthrough recipe only when it computes exactly what the path computes (all scales 1,
  // head model at both ends); the path's JSON is written in every case.
  std::optional<std::string> recipe_yaml(const std::vector<double>& genome) const override {
    return dfs_passthrough_yaml({genome_.model_paths(), genome_.decode(genome)});
  }
  std::vector<std::pair<std::string, std::string>> extra_files(
      const std::vector<double>& genome) const override {
    return {{"path.json", genome_.to_json(genome).dump(2) + "\n"}};
  }

  // Per step of the path: which layer it runs (global index) and the scale of its input.
  std::vector<LayerSeries> layer_series(const std::vector<double>& genome) const override {
    const LayerPath path = genome_.decode(genome);
    LayerSeries layer{"layer (global index)", {}}, scale{"input scale", {}};
    for (const LayerStep& s : path.steps) {
      layer.values.push_back(genome_.global_layer(s.source, int(s.layer)));
      scale.values.push_back(s.input_scale);
    }
    return {layer, scale};
  }
  std::string layer_axis() const override { return "step of the path"; }
  std::string describe(const std::vector<double>& genome) const override {
    return genome_.describe(genome_.decode(genome));
  }

 private:
  DfsGenome genome_;
  std::vector<std::shared_ptr<const WeightSource>> sources_;
};

}  // namespace

std::unique_ptr<RunGenome> make_dfs_run_genome(
    const EvolveConfig& config, std::vector<std::shared_ptr<const WeightSource>> sources) {
  return std::make_unique<DfsRunGenome>(config, std::move(sources));
}

}  // namespace shoal::evolve
