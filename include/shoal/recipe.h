// mergekit-compatible merge recipes (YAML). See ../shared/specs/merge-methods.md and
// docs/RECIPES.md. Parsing checks every key: an unknown or misplaced key is an error naming the
// key, the file and the line. Implemented in src/merge/recipe.cpp.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shoal/dtype.h"

namespace shoal {

// One entry of a parameter value. A plain number is one entry with no filter and one value; a
// list of numbers is a gradient (values.size() > 1); a list of {filter, value} maps gives one
// entry each. Booleans are stored as 0 / 1.
struct ParamEntry {
  std::optional<std::string> filter;  // nullopt or "*" match every tensor
  std::vector<double> values;         // one value, or the points of a gradient
};

struct ParamValue {
  std::vector<ParamEntry> entries;
  int line = 0;  // 1-based line in the recipe file, for messages
};

using ParamMap = std::map<std::string, ParamValue>;

// The value for `tensor_name` at gradient position t in [0, 1]: the first entry whose filter is
// absent, "*", or a substring of the name; a gradient of n points is interpolated linearly at
// s = t * (n - 1). nullopt when no entry matches.
std::optional<double> resolve_param(const ParamValue& value, std::string_view tensor_name,
                                    double t);

struct RecipeSource {
  std::string model;                               // as written in the recipe
  std::optional<std::pair<int, int>> layer_range;  // [begin, end)
  ParamMap params;
  int line = 0;
};

struct RecipeSlice {
  std::vector<RecipeSource> sources;
  std::optional<std::string> base_model;
  ParamMap params;
  int line = 0;
};

struct Recipe {
  std::filesystem::path file;  // where it was read from (for messages and for relative paths)
  std::string text;            // verbatim, copied into the output folder
  std::string merge_method;
  std::optional<std::string> base_model;
  // True when the recipe used `models:`; the slices then have one source each with no
  // layer_range, meaning "all layers", and are expanded by the planner once layer counts are known.
  bool uses_models = false;
  std::vector<RecipeSlice> slices;
  ParamMap params;
  std::optional<DType> dtype;
  std::optional<DType> out_dtype;
  std::string tokenizer_source = "base";  // "base", "union" or a model path
  std::optional<std::string> chat_template;
};

// Throws ConfigError("<file>:<line>: ...") for bad YAML, unknown keys, wrong types, or a recipe
// with both or neither of `models` and `slices`.
Recipe parse_recipe(std::string_view yaml_text, const std::filesystem::path& file_for_messages);
Recipe load_recipe(const std::filesystem::path& file);

}  // namespace shoal
