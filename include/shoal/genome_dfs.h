// Data-flow-space genome of `shoal evolve` (Sakana AI's DFS merging, Akiba et al. 2024,
// "Evolutionary Optimization of Model Merging Recipes", section 3.2): a vector of numbers becomes
// a LayerPath (include/shoal/model.h), the order in which a token's hidden state passes through
// the layers of several models. See docs/EVOLVE.md, "Data-flow space".
//
// Layout. The layers of all source models are laid out in order (model 0's layers 0..n0-1, then
// model 1's, ...: M layers in all, "global layer" g in [0, M)) and that sequence is repeated r
// times: T = M r slots, slot t = repeat * M + g.
// Genes, in this order:
//   [0, T)                  indicator of slot t, box [-1, 1]: the slot is on the path iff its
//                           gene is > 0 (the paper's indicator array I, searched as a
//                           continuous value and thresholded at 0);
//   [T, T + (M + 1) M)      only with search_scales: the scaling matrix W, row-major, box
//                           [scale_lower, scale_upper]. Row 0 is the embeddings (the virtual
//                           source of the path's first layer), row 1 + i is global layer i;
//                           column j is global layer j. The gene of W[from][to] scales the
//                           residual stream before layer `to` when the previous layer on the
//                           path was `from` (or the embeddings).
// Decoding walks the slots in order and appends each included slot's layer to the path with
// input_scale = W[previous][layer] (1 without search_scales), stopping after max_path_length
// steps. A path may be empty (embeddings -> final norm -> output projection).
//
// Evaluation needs no model on disk: load() builds a Model whose steps are views into the
// source models' layers (Model::load_path). The result is saved as JSON (to_json /
// dfs_path_from_json), as a mergekit passthrough recipe when that is exact
// (dfs_passthrough_yaml), or as a plain model folder (write_dfs_model).
//
// Implemented in src/evolve/genome_dfs.cpp (options, layout, decode, JSON) and
// src/evolve/genome_dfs_export.cpp (recipe text, model folder). Immutable after construction;
// the const member functions may be called from several threads.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/model.h"
#include "shoal/tokenizer.h"
#include "shoal/weights.h"

namespace shoal {

struct DfsGenomeOptions {
  std::vector<std::string> models;  // source models (HF folders or .gguf files), in slot order
  int repeats = 2;                  // r >= 1: times the M layers are laid out
  std::string head_model;           // one of `models`: embeddings, final norm, lm_head, config
                                    //   and tokenizer; empty: the first model
  bool search_scales = true;        // false: W fixed at 1, the genome is the T indicators only
  double scale_lower = 0.5;         // box of every W gene; 0 < scale_lower < scale_upper
  double scale_upper = 1.5;
  int max_path_length = 0;  // most steps a decoded path keeps; 0: T (no limit)
};

// One slot of the laid-out sequence.
struct DfsSlot {
  int repeat = 0;  // [0, r)
  int model = 0;   // index into options().models
  int layer = 0;   // layer within that model
  int global = 0;  // global layer index in [0, M)
};

class DfsGenome {
 public:
  // Checks the options and opens the models (relative paths are tried against the current
  // directory, then `config_dir`). Throws ConfigError naming the option or model: no models, a
  // model listed twice, an unknown head_model, repeats < 1, a bad scale box, max_path_length < 0;
  // models whose architecture or sizes differ (see Model::load_path), or whose tokenizers differ
  // (vocabulary size, any token's piece, BOS / EOS) when both carry one.
  DfsGenome(DfsGenomeOptions options, const std::filesystem::path& config_dir);
  // Models already open, e.g. a merged model held in memory joining the pool: sources[i] is
  // options.models[i], which is then only a label. Tokenizers are compared through each
  // source's tokenizer_dir().
  DfsGenome(DfsGenomeOptions options, std::vector<std::shared_ptr<const WeightSource>> sources);

  const DfsGenomeOptions& options() const { return options_; }
  size_t size() const { return lower_.size(); }
  int n_models() const { return static_cast<int>(sources_.size()); }
  int head_model() const { return head_; }                          // index into options().models
  int total_layers() const { return total_layers_; }                // M
  int n_slots() const { return total_layers_ * options_.repeats; }  // T
  const std::vector<int>& model_layers() const { return model_layers_; }  // per model
  DfsSlot slot(int t) const;
  int global_layer(int model, int layer) const;
  size_t indicator_index(int slot) const { return static_cast<size_t>(slot); }
  // Gene of W[from][to]: from = -1 for the embeddings, else a global layer; to a global layer.
  // Throws ConfigError without search_scales.
  size_t scale_index(int from, int to) const;

  const std::vector<double>& lower() const { return lower_; }
  const std::vector<double>& upper() const { return upper_; }
  // A start point for the optimiser: the head model run as it is (its layers in the first repeat
  // on, at +0.5; every other slot off, at -0.5), all scales 1 (clamped into the box).
  std::vector<double> initial() const;
  // "slot 5 (repeat 0, b layer 1)", "W[embed -> a layer 0]", "W[a layer 3 -> b layer 0]".
  std::string gene_name(size_t i) const;

  // Throws ConfigError for a genome of the wrong size or with a non-finite value.
  LayerPath decode(const std::vector<double>& genes) const;
  // One line for reports: "5 steps: a[0] a[1] b[1]x0.912 b[2] a[3]" (model labels are the
  // models' folder names, or m<index> when two share one; "xS" marks a scale other than 1).
  std::string describe(const LayerPath& path) const;

  // The models as resolved (paths that exist from the current directory), or the labels given
  // with open sources.
  const std::vector<std::string>& model_paths() const { return paths_; }
  const std::vector<std::shared_ptr<const WeightSource>>& sources() const { return sources_; }
  // The candidate model: views into the sources' layers, nothing copied or written.
  Model load(const LayerPath& path, const ModelOptions& options = {}) const;
  // The head model's tokenizer (its folder's files, or a GGUF file's vocabulary). Throws
  // ConfigError when it has none.
  Tokenizer tokenizer() const;

  // {"format": "shoal-dfs-path", "version": 1, "models": [...], "head_model": i,
  //  "steps": [{"model", "layer", "scale"}...], "description": "...", "genome": [...]}
  nlohmann::json to_json(const std::vector<double>& genes) const;

 private:
  void init();

  DfsGenomeOptions options_;
  std::vector<std::string> paths_;
  std::vector<std::shared_ptr<const WeightSource>> sources_;
  int head_ = 0;
  int total_layers_ = 0;
  std::vector<int> model_layers_;
  std::vector<int> first_global_;  // global index of each model's layer 0
  std::vector<std::string> labels_;
  // Where each model's tokenizer is read from (a folder or a .gguf file), if it has one.
  std::vector<std::optional<std::filesystem::path>> tokenizer_from_;
  std::vector<double> lower_, upper_;
};

// A saved path: the models it refers to and the steps.
struct DfsPathFile {
  std::vector<std::string> models;
  LayerPath path;
};

// The JSON of DfsGenome::to_json (without "genome" and "description" when absent here).
nlohmann::json dfs_path_to_json(const DfsPathFile& file);
// Reads that JSON back (extra keys "description" and "genome" are accepted and ignored). Throws
// FormatError naming the key for a foreign or corrupt file: wrong format / version, unknown
// keys, a step naming a model outside "models", a negative layer, a non-finite scale.
DfsPathFile dfs_path_from_json(const nlohmann::json& j);

// A mergekit recipe (merge_method passthrough, one slice per run of consecutive layers of one
// model) that `shoal merge` turns into a model computing exactly what the path computes, or
// nullopt, with the reason in *why_not, when there is none: a scale other than 1, an empty path,
// or a first / last step from a model other than the head (mergekit takes the embeddings from
// the first slice's model and the final norm / lm_head from the last slice's).
std::optional<std::string> dfs_passthrough_yaml(const DfsPathFile& file,
                                                std::string* why_not = nullptr);

// Writes the path as a plain Llama-family model folder into `out_dir` (created; written under a
// temporary name and renamed when complete; an existing out_dir is an IoError): layer k is a
// copy of step k's layer (a repeated layer is written again), embeddings / final norm / lm_head
// and config.json (num_hidden_layers = steps) from the head source, its tokenizer files copied.
// Input scales are folded: with C_k = s_1 ... s_k, step k's o_proj and down_proj (weights and
// biases) are multiplied by 1 / C_k, in the stored dtype (rounded to nearest even). This equals
// the path exactly in real arithmetic except for the RMSNorm epsilon, which the folded model
// applies as eps instead of eps / C^2 (docs/EVOLVE.md); with all scales 1 the tensors are byte
// copies and the model is exact. Throws ConfigError for a scale <= 0 (no such fold exists).
void write_dfs_model(const std::vector<std::shared_ptr<const WeightSource>>& sources,
                     const LayerPath& path, const std::filesystem::path& out_dir);

}  // namespace shoal
