// Recipe YAML -> shoal::Recipe. Every mapping is walked key by key, so an unknown, misplaced or
// duplicated key is reported with its line instead of being ignored. Parameter names are not
// checked here: which ones are valid depends on the merge method, and the planner reports all of
// them together.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "merge/methods.h"
#include "shoal/error.h"
#include "shoal/recipe.h"

namespace shoal {
namespace {

constexpr std::string_view kTopKeys[] = {"merge_method", "base_model",       "models",
                                         "slices",       "parameters",       "dtype",
                                         "out_dtype",    "tokenizer_source", "chat_template"};
constexpr std::string_view kModelKeys[] = {"model", "parameters"};
constexpr std::string_view kSliceKeys[] = {"sources", "base_model", "parameters"};
constexpr std::string_view kSourceKeys[] = {"model", "layer_range", "parameters"};
constexpr std::string_view kFilterKeys[] = {"filter", "value"};

std::string method_list() {
  std::string out;
  for (int i = 0; i <= static_cast<int>(merge::Method::kPassthrough); ++i) {
    if (i > 0) out += ", ";
    out += merge::method_name(static_cast<merge::Method>(i));
  }
  return out;
}

template <size_t N>
std::string join(const std::string_view (&items)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (i > 0) out += ", ";
    out += items[i];
  }
  return out;
}

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  Recipe parse(const YAML::Node& root, Recipe recipe) {
    if (!root.IsMap()) fail(root, 1, "a recipe must be a YAML mapping (merge_method, models, ...)");
    YAML::Node models, slices;  // handles; undefined until seen
    YAML::Node models_key, slices_key;
    int method_line = 0;
    for (const auto& [key, value] : entries(root, kTopKeys, "the top level")) {
      const int line = line_of(key, 1);
      if (key == "merge_method") {
        recipe.merge_method = string_value(value, line, "merge_method");
        method_line = line;
      } else if (key == "base_model") {
        recipe.base_model = model_value(value, line, "base_model");
      } else if (key == "models") {
        models = value;
        models_key = key.node;
      } else if (key == "slices") {
        slices = value;
        slices_key = key.node;
      } else if (key == "parameters") {
        recipe.params = params(value, line, "parameters");
      } else if (key == "dtype") {
        recipe.dtype = dtype_value(value, line, "dtype");
      } else if (key == "out_dtype") {
        recipe.out_dtype = dtype_value(value, line, "out_dtype");
      } else if (key == "tokenizer_source") {
        recipe.tokenizer_source = string_value(value, line, "tokenizer_source");
      } else if (key == "chat_template") {
        recipe.chat_template = string_value(value, line, "chat_template");
      }
    }
    if (method_line == 0) fail_line(1, "missing 'merge_method' (e.g. merge_method: ties)");
    if (!merge::parse_method(recipe.merge_method)) {
      fail_line(method_line, "unknown merge_method '" + recipe.merge_method +
                                 "' (expected one of: " + method_list() + ")");
    }
    const bool has_models = models_key.IsDefined() && models_key.IsScalar();
    const bool has_slices = slices_key.IsDefined() && slices_key.IsScalar();
    if (has_models && has_slices) {
      fail_line(std::max(line_of(models_key, 1), line_of(slices_key, 1)),
                "a recipe has either 'models' or 'slices', not both");
    }
    if (!has_models && !has_slices) fail_line(1, "a recipe needs 'models' or 'slices'");
    if (has_models) {
      recipe.uses_models = true;
      parse_models(models, line_of(models_key, 1), recipe);
    } else {
      parse_slices(slices, line_of(slices_key, 1), recipe);
    }
    return recipe;
  }

 private:
  // A map key with its node and line, comparable to a string for dispatch.
  struct Key {
    YAML::Node node;
    std::string name;
    bool operator==(std::string_view s) const { return name == s; }
  };
  struct Entry {
    Key key;
    YAML::Node value;
  };

  [[noreturn]] void fail_line(int line, const std::string& message) const {
    throw ConfigError(file_ + ":" + std::to_string(line) + ": " + message);
  }
  [[noreturn]] void fail(const YAML::Node& at, int fallback_line,
                         const std::string& message) const {
    fail_line(line_of(at, fallback_line), message);
  }

  static int line_of(const YAML::Node& n, int fallback) {
    if (!n.IsDefined()) return fallback;
    const YAML::Mark mark = n.Mark();
    return mark.line >= 0 ? mark.line + 1 : fallback;
  }
  static int line_of(const Key& k, int fallback) { return line_of(k.node, fallback); }

  // The entries of a mapping, rejecting keys outside `allowed` and duplicated keys.
  template <size_t N>
  std::vector<Entry> entries(const YAML::Node& map, const std::string_view (&allowed)[N],
                             const std::string& where) const {
    std::vector<Entry> out;
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar())
        fail(key, line_of(map, 1), "a key in " + where + " must be a plain name");
      const std::string name = key.Scalar();
      if (std::find(std::begin(allowed), std::end(allowed), name) == std::end(allowed)) {
        fail(key, line_of(map, 1),
             "unknown key '" + name + "' in " + where + " (expected: " + join(allowed) + ")");
      }
      if (!seen.insert(name).second) {
        fail(key, line_of(map, 1), "key '" + name + "' appears twice in " + where);
      }
      out.push_back({{key, name}, it->second});
    }
    return out;
  }

  std::string string_value(const YAML::Node& n, int line, const std::string& what) const {
    if (!n.IsScalar() || n.Scalar().empty()) fail(n, line, what + " must be a string");
    return n.Scalar();
  }

  // A model reference: a local folder path. LoRA forms are rejected with a clear message.
  std::string model_value(const YAML::Node& n, int line, const std::string& what) const {
    if (n.IsMap()) {
      fail(n, line,
           what +
               " is written as a mapping (a model with a LoRA adapter); LoRA adapters are not "
               "supported: merge the adapter into its model first and name that folder");
    }
    const std::string s = string_value(n, line, what);
    if (s.find('+') != std::string::npos) {
      fail(n, line,
           what + " '" + s +
               "' names a LoRA adapter ('model+lora'); LoRA adapters are not "
               "supported: merge the adapter into its model first and name that folder");
    }
    return s;
  }

  std::optional<DType> dtype_value(const YAML::Node& n, int line, const std::string& what) const {
    const std::string s = string_value(n, line, what);
    const auto t = parse_torch_dtype(s);
    if (!t) fail(n, line, what + " '" + s + "' is not one of bfloat16, float16, float32");
    return t;
  }

  // A number or a boolean (stored as 0 / 1); numbers written in quotes are accepted too.
  std::optional<double> number(const YAML::Node& n) const {
    if (!n.IsScalar()) return std::nullopt;
    bool b = false;
    if (YAML::convert<bool>::decode(n, b)) return b ? 1.0 : 0.0;
    double d = 0;
    if (YAML::convert<double>::decode(n, d) && std::isfinite(d)) return d;
    return std::nullopt;
  }

  std::vector<double> number_or_gradient(const YAML::Node& n, int line,
                                         const std::string& what) const {
    if (n.IsSequence()) {
      if (n.size() == 0) fail(n, line, what + " is an empty list (expected numbers)");
      std::vector<double> values;
      for (const auto& item : n) {
        const auto v = number(item);
        if (!v) fail(item, line, what + ": '" + describe(item) + "' is not a number");
        values.push_back(*v);
      }
      return values;
    }
    const auto v = number(n);
    if (!v) {
      fail(n, line,
           what + " must be a number, a boolean or a list of numbers (got '" + describe(n) + "')");
    }
    return {*v};
  }

  static std::string describe(const YAML::Node& n) {
    if (n.IsScalar()) return n.Scalar();
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    return "nothing";
  }

  ParamMap params(const YAML::Node& n, int line, const std::string& where) const {
    ParamMap out;
    if (n.IsNull()) return out;
    if (!n.IsMap()) fail(n, line, where + " must be a mapping of parameter names to values");
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar())
        fail(key, line, "a parameter name in " + where + " must be a plain name");
      const std::string name = key.Scalar();
      const int key_line = line_of(key, line);
      if (!seen.insert(name).second) {
        fail_line(key_line, "parameter '" + name + "' appears twice in " + where);
      }
      out[name] = param_value(it->second, key_line, where + "." + name);
    }
    return out;
  }

  ParamValue param_value(const YAML::Node& n, int line, const std::string& what) const {
    ParamValue value;
    value.line = line;
    const bool filter_list = n.IsSequence() && n.size() > 0 && n[0].IsMap();
    if (!filter_list) {
      value.entries.push_back({std::nullopt, number_or_gradient(n, line, what)});
      return value;
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string where = what + "[" + std::to_string(i) + "]";
      if (!item.IsMap()) {
        fail(item, line, where + " must be a {filter, value} mapping like the entries before it");
      }
      ParamEntry entry;
      bool has_value = false;
      for (const auto& [key, v] : entries(item, kFilterKeys, where)) {
        const int key_line = line_of(key, line);
        if (key == "filter") {
          if (!v.IsNull()) entry.filter = string_value(v, key_line, where + ".filter");
        } else {
          entry.values = number_or_gradient(v, key_line, where + ".value");
          has_value = true;
        }
      }
      if (!has_value) fail(item, line, where + " has no 'value'");
      value.entries.push_back(std::move(entry));
    }
    return value;
  }

  void parse_models(const YAML::Node& n, int line, Recipe& recipe) const {
    if (!n.IsSequence() || n.size() == 0) fail(n, line, "'models' must be a non-empty list");
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string where = "models[" + std::to_string(i) + "]";
      const int item_line = line_of(item, line);
      if (!item.IsMap()) fail(item, line, where + " must be a mapping with 'model'");
      RecipeSource source;
      source.line = item_line;
      bool has_model = false;
      for (const auto& [key, v] : entries(item, kModelKeys, where)) {
        const int key_line = line_of(key, item_line);
        if (key == "model") {
          source.model = model_value(v, key_line, where + ".model");
          has_model = true;
        } else {
          source.params = params(v, key_line, where + ".parameters");
        }
      }
      if (!has_model) fail_line(item_line, where + " has no 'model'");
      RecipeSlice slice;
      slice.line = item_line;
      slice.sources.push_back(std::move(source));
      recipe.slices.push_back(std::move(slice));
    }
  }

  void parse_slices(const YAML::Node& n, int line, Recipe& recipe) const {
    if (!n.IsSequence() || n.size() == 0) fail(n, line, "'slices' must be a non-empty list");
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string where = "slices[" + std::to_string(i) + "]";
      const int item_line = line_of(item, line);
      if (!item.IsMap()) fail(item, line, where + " must be a mapping with 'sources'");
      RecipeSlice slice;
      slice.line = item_line;
      bool has_sources = false;
      for (const auto& [key, v] : entries(item, kSliceKeys, where)) {
        const int key_line = line_of(key, item_line);
        if (key == "sources") {
          parse_sources(v, key_line, where, slice);
          has_sources = true;
        } else if (key == "base_model") {
          slice.base_model = model_value(v, key_line, where + ".base_model");
        } else {
          slice.params = params(v, key_line, where + ".parameters");
        }
      }
      if (!has_sources) fail_line(item_line, where + " has no 'sources'");
      recipe.slices.push_back(std::move(slice));
    }
  }

  void parse_sources(const YAML::Node& n, int line, const std::string& slice_where,
                     RecipeSlice& slice) const {
    const std::string list_where = slice_where + ".sources";
    if (!n.IsSequence() || n.size() == 0) fail(n, line, list_where + " must be a non-empty list");
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string where = list_where + "[" + std::to_string(i) + "]";
      const int item_line = line_of(item, line);
      if (!item.IsMap()) fail(item, line, where + " must be a mapping with 'model'");
      RecipeSource source;
      source.line = item_line;
      bool has_model = false;
      for (const auto& [key, v] : entries(item, kSourceKeys, where)) {
        const int key_line = line_of(key, item_line);
        if (key == "model") {
          source.model = model_value(v, key_line, where + ".model");
          has_model = true;
        } else if (key == "layer_range") {
          source.layer_range = layer_range(v, key_line, where + ".layer_range");
        } else {
          source.params = params(v, key_line, where + ".parameters");
        }
      }
      if (!has_model) fail_line(item_line, where + " has no 'model'");
      slice.sources.push_back(std::move(source));
    }
  }

  std::pair<int, int> layer_range(const YAML::Node& n, int line, const std::string& what) const {
    int a = 0, b = 0;
    if (!n.IsSequence() || n.size() != 2 || !YAML::convert<int>::decode(n[0], a) ||
        !YAML::convert<int>::decode(n[1], b)) {
      fail(n, line, what + " must be two integers [begin, end)");
    }
    return {a, b};
  }

  std::string file_;
};

}  // namespace

std::optional<double> resolve_param(const ParamValue& value, std::string_view tensor_name,
                                    double t) {
  for (const auto& entry : value.entries) {
    const bool matches = !entry.filter || *entry.filter == "*" ||
                         tensor_name.find(*entry.filter) != std::string_view::npos;
    if (!matches) continue;
    const auto& v = entry.values;
    if (v.empty()) return std::nullopt;
    if (v.size() == 1) return v[0];
    // Gradient: n points spread evenly over [0, 1], linear in between.
    const double s = std::clamp(t, 0.0, 1.0) * static_cast<double>(v.size() - 1);
    const size_t i0 = static_cast<size_t>(std::floor(s));
    if (i0 + 1 >= v.size()) return v.back();
    const double frac = s - static_cast<double>(i0);
    return (1.0 - frac) * v[i0] + frac * v[i0 + 1];
  }
  return std::nullopt;
}

Recipe parse_recipe(std::string_view yaml_text, const std::filesystem::path& file_for_messages) {
  const std::string file = file_for_messages.empty() ? "recipe" : file_for_messages.string();
  Recipe recipe;
  recipe.file = file_for_messages;
  recipe.text = std::string(yaml_text);
  YAML::Node root;
  try {
    root = YAML::Load(recipe.text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  try {
    return Parser(file).parse(root, std::move(recipe));
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws for conversions we did not anticipate; keep the one-line, located form.
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

Recipe load_recipe(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot read recipe " + file.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(errno_message("cannot read recipe " + file.string()));
  return parse_recipe(text.str(), file);
}

}  // namespace shoal
