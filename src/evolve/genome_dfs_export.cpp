// A data-flow path saved for use outside shoal evolve: as a mergekit passthrough recipe (when one
// is exact) or as a plain model folder with the input scales folded into the layers.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "shoal/error.h"
#include "shoal/genome_dfs.h"
#include "shoal/safetensors.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

// Files a tokenizer may need, copied from the head model's folder when present.
constexpr const char* kTokenizerFiles[] = {"tokenizer.json",
                                           "tokenizer_config.json",
                                           "special_tokens_map.json",
                                           "tokenizer.model",
                                           "vocab.json",
                                           "merges.txt",
                                           "added_tokens.json",
                                           "generation_config.json",
                                           "chat_template.jinja"};

std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw IoError("cannot write " + path.string());
}

}  // namespace

std::optional<std::string> dfs_passthrough_yaml(const DfsPathFile& file, std::string* why_not) {
  auto no = [&](const std::string& why) -> std::optional<std::string> {
    if (why_not != nullptr) *why_not = why;
    return std::nullopt;
  };
  const auto& steps = file.path.steps;
  const int head = file.path.head_source;
  if (head < 0 || head >= static_cast<int>(file.models.size())) {
    return no("head_model is not one of the models");
  }
  if (steps.empty()) return no("the path is empty; a recipe needs at least one slice");
  for (const LayerStep& s : steps) {
    if (s.source < 0 || s.source >= static_cast<int>(file.models.size())) {
      return no("a step names a model outside the list");
    }
    if (s.input_scale != 1.0) {
      return no("a step has input scale " + std::to_string(s.input_scale) +
                "; a passthrough recipe cannot scale the residual stream");
    }
  }
  if (steps.front().source != head || steps.back().source != head) {
    return no(
        "the path starts or ends with a layer of a model other than the head model; mergekit "
        "would take the embeddings from the first slice's model and the final norm / lm_head "
        "from the last slice's");
  }
  std::string y =
      "# A data-flow path found by shoal evolve, as slices of layers (all input scales are 1).\n"
      "merge_method: passthrough\nslices:\n";
  for (size_t k = 0; k < steps.size();) {
    size_t end = k + 1;  // a run of consecutive layers of one model is one slice
    while (end < steps.size() && steps[end].source == steps[k].source &&
           steps[end].layer == steps[end - 1].layer + 1) {
      ++end;
    }
    y += "  - sources:\n      - model: " +
         quoted(file.models[static_cast<size_t>(steps[k].source)]) + "\n        layer_range: [" +
         std::to_string(steps[k].layer) + ", " + std::to_string(steps[end - 1].layer + 1) + "]\n";
    k = end;
  }
  return y;
}

void write_dfs_model(const std::vector<std::shared_ptr<const WeightSource>>& sources,
                     const LayerPath& path, const fs::path& out_dir) {
  // Load the path once: the same checks as evaluation (sources, compatibility, steps).
  ModelOptions check_options;
  check_options.n_threads = 1;
  (void)Model::load_path(sources, path, check_options);
  for (size_t k = 0; k < path.steps.size(); ++k) {
    if (!(path.steps[k].input_scale > 0)) {
      throw ConfigError("write_dfs_model: step " + std::to_string(k) + " has input scale " +
                        std::to_string(path.steps[k].input_scale) +
                        "; only positive scales fold into the weights");
    }
  }
  std::error_code ec;
  if (fs::exists(out_dir, ec)) throw IoError("write_dfs_model: " + out_dir.string() + " exists");
  const WeightSource& head = *sources[static_cast<size_t>(path.head_source)];

  // Output tensors: (output name, source, source name, divisor). Layer k is step k's layer with
  // o_proj / down_proj divided by C_k = s_1 ... s_k (docs/EVOLVE.md, "Data-flow space").
  struct Item {
    std::string name;
    const WeightSource* source;
    std::string source_name;
    double divisor;
  };
  std::vector<Item> items;
  const bool tied = head.config().value("tie_word_embeddings", false);
  items.push_back({"model.embed_tokens.weight", &head, "model.embed_tokens.weight", 1.0});
  double c = 1.0;
  for (size_t k = 0; k < path.steps.size(); ++k) {
    const LayerStep& s = path.steps[k];
    c *= s.input_scale;
    const WeightSource& src = *sources[static_cast<size_t>(s.source)];
    const std::string from = "model.layers." + std::to_string(s.layer) + ".";
    const std::string to = "model.layers." + std::to_string(k) + ".";
    std::vector<std::string> names = src.tensor_names();
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      if (!n.starts_with(from)) continue;
      const std::string rest = n.substr(from.size());
      const bool branch_out =
          rest.starts_with("self_attn.o_proj.") || rest.starts_with("mlp.down_proj.");
      items.push_back({to + rest, &src, n, branch_out ? c : 1.0});
    }
  }
  items.push_back({"model.norm.weight", &head, "model.norm.weight", 1.0});
  if (!tied) items.push_back({"lm_head.weight", &head, "lm_head.weight", 1.0});

  std::vector<OutputTensorSpec> specs;
  for (const Item& it : items) {
    const TensorView t = *it.source->tensor(it.source_name);
    specs.push_back({it.name, t.dtype, t.shape});
  }
  const fs::path tmp = out_dir.parent_path() / (".tmp-" + out_dir.filename().string());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  try {
    {
      SafetensorsWriter writer(tmp, specs, uint64_t{5} << 30);
      std::vector<double> wide;
      std::vector<std::byte> narrow;
      for (size_t i = 0; i < items.size(); ++i) {
        const TensorView t = *items[i].source->tensor(items[i].source_name);
        if (items[i].divisor == 1.0) {
          writer.write(i, 0, t.data, t.nbytes);
          continue;
        }
        // Divide in double, round once to the stored dtype.
        const size_t n = static_cast<size_t>(t.numel());
        wide.resize(n);
        to_f64(t.dtype, t.data, wide.data(), n);
        for (double& v : wide) v /= items[i].divisor;
        narrow.resize(t.nbytes);
        from_f64(wide.data(), t.dtype, narrow.data(), n);
        writer.write(i, 0, narrow.data(), narrow.size());
      }
      writer.finish();
    }
    nlohmann::json config = head.config();
    config["num_hidden_layers"] = path.steps.size();
    write_text(tmp / "config.json", config.dump(2) + "\n");
    const fs::path tok = head.tokenizer_dir();
    if (!tok.empty()) {
      for (const char* f : kTokenizerFiles) {
        if (fs::exists(tok / f, ec)) fs::copy_file(tok / f, tmp / f);
      }
    }
    fs::rename(tmp, out_dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace shoal
