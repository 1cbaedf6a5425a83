// Parameter-space genome -> mergekit YAML. Numbers are written in their shortest round-trip
// form (nlohmann's), strings as JSON double-quoted scalars (valid YAML), so that parse_recipe
// of the text holds exactly the genome's values; decode() is that parse.
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "shoal/error.h"
#include "shoal/genome.h"

namespace shoal {
namespace {

std::string num(double x) {
  return nlohmann::json(x).dump();
}
std::string str(const std::string& s) {
  return nlohmann::json(s).dump();
}

}  // namespace

namespace {

// Writes one parameter's value for a (model slot, parameter): per filter set, either the value
// of `group` (groups >= 0) or the gradient over all groups (group < 0).
class ValueWriter {
 public:
  ValueWriter(const PsGenome& g, const std::vector<double>& genome) : g_(g), genome_(genome) {}

  std::string value(int group, int slot, int param) const {
    const auto& filters = g_.options().filters;
    if (filters.empty()) return points(group, slot, 0, param);
    std::string out = "[";
    for (int set = 0; set < g_.n_filter_sets(); ++set) {
      if (set > 0) out += ", ";
      out += "{";
      if (set < static_cast<int>(filters.size())) out += "filter: " + str(filters[set]) + ", ";
      out += "value: " + points(group, slot, set, param) + "}";
    }
    return out + "]";
  }

 private:
  std::string points(int group, int slot, int set, int param) const {
    if (group >= 0 || g_.n_groups() == 1) {
      return num(genome_[g_.index(std::max(group, 0), slot, set, param)]);
    }
    std::string out = "[";
    for (int k = 0; k < g_.n_groups(); ++k) {
      if (k > 0) out += ", ";
      out += num(genome_[g_.index(k, slot, set, param)]);
    }
    return out + "]";
  }

  const PsGenome& g_;
  const std::vector<double>& genome_;
};

}  // namespace

std::string PsGenome::to_yaml(const std::vector<double>& genome) const {
  if (genome.size() != size()) {
    throw ConfigError("evolve genome: " + std::to_string(genome.size()) +
                      " values given; this genome has " + std::to_string(size()) + " (" +
                      std::to_string(n_groups()) + " groups x " + std::to_string(n_model_slots()) +
                      " models x " + std::to_string(n_filter_sets()) + " filter sets x " +
                      std::to_string(param_names_.size()) + " parameters)");
  }
  for (size_t i = 0; i < genome.size(); ++i) {
    if (!std::isfinite(genome[i])) {
      throw ConfigError("evolve genome: value " + std::to_string(i) + " (" + gene_name(i) +
                        ") is not finite");
    }
  }
  const PsGenomeOptions& o = options_;
  const ValueWriter values(*this, genome);
  const bool slerp = o.merge_method == "slerp";
  std::ostringstream y;
  y << "# shoal evolve: parameter-space genome, " << n_groups() << " layer group(s)"
    << (o.smooth ? ", smooth" : "") << "\n";
  y << "merge_method: " << o.merge_method << "\n";
  if (o.base_model) y << "base_model: " << str(*o.base_model) << "\n";

  // Method-wide parameters: the fixed ones, and slerp's t when it is one gradient.
  std::string global;
  for (const auto& [name, value] : o.parameters) global += "  " + name + ": " + num(value) + "\n";
  if (o.smooth) {
    if (slerp) global += "  t: " + values.value(-1, 0, 0) + "\n";
    y << "models:\n";
    for (int slot = 0; slot < n_model_slots(); ++slot) {
      y << "  - model: " << str(o.models[slot]) << "\n";
      if (slerp) continue;
      y << "    parameters:\n";
      for (size_t p = 0; p < param_names_.size(); ++p) {
        y << "      " << param_names_[p] << ": " << values.value(-1, slot, int(p)) << "\n";
      }
    }
  } else {
    y << "slices:\n";
    for (int group = 0; group < n_groups(); ++group) {
      // (Built in steps: GCC 12 warns falsely about "[" + std::to_string(...).)
      std::string range = "[";
      range += std::to_string(groups_[group].first);
      range += ", ";
      range += std::to_string(groups_[group].second);
      range += "]";
      y << "  - sources:\n";
      if (o.base_model) {
        y << "      - model: " << str(*o.base_model) << "\n        layer_range: " << range << "\n";
      }
      for (int slot = 0; slot < n_model_slots(); ++slot) {
        y << "      - model: " << str(o.models[slot]) << "\n        layer_range: " << range << "\n";
        if (slerp) continue;
        y << "        parameters:\n";
        for (size_t p = 0; p < param_names_.size(); ++p) {
          y << "          " << param_names_[p] << ": " << values.value(group, slot, int(p)) << "\n";
        }
      }
      if (slerp) y << "    parameters:\n      t: " << values.value(group, 0, 0) << "\n";
    }
  }
  if (!global.empty()) y << "parameters:\n" << global;
  if (o.dtype) y << "dtype: " << *o.dtype << "\n";
  if (o.tokenizer_source) y << "tokenizer_source: " << str(*o.tokenizer_source) << "\n";
  return y.str();
}

Recipe PsGenome::decode(const std::vector<double>& genome) const {
  return parse_recipe(to_yaml(genome), "evolve-genome.yml");
}

}  // namespace shoal
