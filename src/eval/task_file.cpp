// Task files (YAML) -> RawTask -> TaskSpec. Every mapping is walked key by key, as in recipes, so
// an unknown or misplaced key is reported with its line. Loading the datasets is task_load.cpp.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "eval/task_raw.h"
#include "eval/template.h"
#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {
namespace {

using eval::LinedTemplate;
using eval::RawTask;

using Keys = std::vector<std::string_view>;

const Keys kCommonKeys = {"name",  "kind",   "dataset", "split",
                          "limit", "weight", "metric",  "add_bos"};
const Keys kChoiceKeys = {"description", "prompt", "target_delimiter", "fewshot",
                          "choices",     "gold",   "gold_base",        "gold_labels"};
const Keys kGenerationKeys = {"description", "prompt", "target",  "target_delimiter", "fewshot",
                              "max_tokens",  "stop",   "extract", "gold_extract",     "normalize"};
const Keys kPerplexityKeys = {"text", "stride"};
const Keys kDatasetKeys = {"train", "dev", "test"};
const Keys kFewshotKeys = {"count", "split", "separator"};
const Keys kExtractKeys = {"regex", "match"};
const Keys kNormalizeKeys = {"ignore", "remove_commas", "lower", "strip", "numbers"};

std::string join(const Keys& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i > 0 ? ", " : "") + std::string(keys[i]);
  return out;
}

Keys concat(const Keys& a, const Keys& b) {
  Keys out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

const Keys& kind_keys(TaskKind kind) {
  switch (kind) {
    case TaskKind::kMultipleChoice:
      return kChoiceKeys;
    case TaskKind::kGeneration:
      return kGenerationKeys;
    case TaskKind::kPerplexity:
      return kPerplexityKeys;
  }
  return kPerplexityKeys;
}

std::optional<TaskKind> parse_kind(std::string_view s) {
  for (TaskKind k : {TaskKind::kMultipleChoice, TaskKind::kGeneration, TaskKind::kPerplexity}) {
    if (task_kind_name(k) == s) return k;
  }
  return std::nullopt;
}

class Parser {
 public:
  explicit Parser(std::filesystem::path file, std::optional<std::string> split = std::nullopt)
      : path_(std::move(file)), file_(path_.string()), split_(std::move(split)) {}

  std::vector<TaskSpec> parse(std::string_view text) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      fail_line(e.mark.line >= 0 ? e.mark.line + 1 : 1, "invalid YAML: " + e.msg);
    }
    if (!root.IsMap()) fail(root, 1, "a task file must be a YAML mapping (kind, dataset, ...)");
    const YAML::Node& croot = root;  // const: operator[] must not insert keys
    std::vector<RawTask> raws;
    if (croot["tasks"]) {
      if (root.size() != 1) {
        fail(root, 1, "a file with 'tasks:' holds nothing else (put every key inside a task)");
      }
      const YAML::Node list = croot["tasks"];
      if (!list.IsSequence() || list.size() == 0) {
        fail(list, 1, "'tasks' must be a non-empty list of task mappings");
      }
      for (size_t i = 0; i < list.size(); ++i) {
        raws.push_back(parse_task(list[i], "tasks[" + std::to_string(i) + "]"));
        if (raws.back().name.empty())
          fail_line(raws.back().line, "each of several tasks needs a 'name'");
      }
    } else {
      raws.push_back(parse_task(root, "the task"));
      if (raws.back().name.empty()) raws.back().name = path_.stem().string();
    }
    std::set<std::string> names;
    for (const RawTask& r : raws) {
      if (!names.insert(r.name).second) fail_line(r.line, "two tasks are named '" + r.name + "'");
    }
    std::vector<TaskSpec> out;
    for (RawTask& r : raws) {
      if (split_) {
        // The caller's split replaces the file's; a missing one is reported at `dataset:`.
        r.split = *split_;
        r.split_line = 0;
      }
      out.push_back(eval::load_task(r, path_));
    }
    return out;
  }

 private:
  struct Entry {
    YAML::Node key;
    std::string name;
    YAML::Node value;
    int line;
  };

  [[noreturn]] void fail_line(int line, const std::string& message) const {
    throw ConfigError(file_ + ":" + std::to_string(line) + ": " + message);
  }
  [[noreturn]] void fail(const YAML::Node& at, int fallback, const std::string& message) const {
    fail_line(line_of(at, fallback), message);
  }
  static int line_of(const YAML::Node& n, int fallback) {
    if (!n.IsDefined()) return fallback;
    const YAML::Mark mark = n.Mark();
    return mark.line >= 0 ? mark.line + 1 : fallback;
  }

  // The entries of a mapping; a key outside `allowed` or written twice is an error. `other`
  // lists keys that are valid elsewhere (another task kind), for a more useful message.
  std::vector<Entry> entries(const YAML::Node& map, const Keys& allowed, const std::string& where,
                             const std::string& other_note = {}, const Keys& other = {}) const {
    if (!map.IsMap()) fail(map, 1, where + " must be a mapping");
    std::vector<Entry> out;
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key = it->first;
      const int line = line_of(key, line_of(map, 1));
      if (!key.IsScalar()) fail_line(line, "a key in " + where + " must be a plain name");
      const std::string name = key.Scalar();
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        if (std::find(other.begin(), other.end(), name) != other.end()) {
          fail_line(line,
                    "key '" + name + "' " + other_note + " (expected: " + join(allowed) + ")");
        }
        fail_line(line,
                  "unknown key '" + name + "' in " + where + " (expected: " + join(allowed) + ")");
      }
      if (!seen.insert(name).second)
        fail_line(line, "key '" + name + "' appears twice in " + where);
      out.push_back({key, name, it->second, line});
    }
    return out;
  }

  std::string string_value(const Entry& e) const { return string_value(e.value, e.line, e.name); }
  std::string string_value(const YAML::Node& n, int line, const std::string& what) const {
    if (n.IsMap() && n.size() == 1 && n.begin()->second.IsNull()) {
      // `prompt: {question}` is YAML for a mapping; the template must be quoted.
      fail(n, line,
           what + " must be a string; quote a template that starts with '{' (" + what +
               ": \"{...}\")");
    }
    if (!n.IsScalar()) fail(n, line, what + " must be a string");
    return n.Scalar();
  }
  LinedTemplate template_value(const YAML::Node& n, int line, const std::string& what) const {
    const std::string s = string_value(n, line, what);
    std::string error;
    auto t = eval::Template::parse(s, &error);
    if (!t) fail(n, line, what + ": " + error);
    return {std::move(*t), line_of(n, line)};
  }
  LinedTemplate template_value(const Entry& e) const {
    return template_value(e.value, e.line, e.name);
  }
  long long int_value(const Entry& e, long long min) const {
    long long v = 0;
    if (!e.value.IsScalar() || !YAML::convert<long long>::decode(e.value, v)) {
      fail(e.value, e.line, e.name + " must be an integer");
    }
    if (v < min) fail(e.value, e.line, e.name + " must be at least " + std::to_string(min));
    return v;
  }
  double number_value(const Entry& e) const {
    double v = 0;
    if (!e.value.IsScalar() || !YAML::convert<double>::decode(e.value, v) || !std::isfinite(v)) {
      fail(e.value, e.line, e.name + " must be a number");
    }
    return v;
  }
  bool bool_value(const Entry& e) const {
    bool v = false;
    if (!e.value.IsScalar() || !YAML::convert<bool>::decode(e.value, v)) {
      fail(e.value, e.line, e.name + " must be true or false");
    }
    return v;
  }
  // A string, or a list of strings.
  std::vector<std::string> strings_value(const Entry& e) const {
    if (e.value.IsScalar()) return {e.value.Scalar()};
    if (!e.value.IsSequence())
      fail(e.value, e.line, e.name + " must be a string or a list of strings");
    std::vector<std::string> out;
    for (const auto& item : e.value) out.push_back(string_value(item, e.line, e.name + " entry"));
    return out;
  }

  RawTask parse_task(const YAML::Node& map, const std::string& where) {
    if (!map.IsMap()) fail(map, 1, where + " must be a mapping (kind, dataset, ...)");
    RawTask r;
    r.line = line_of(map, 1);
    const YAML::Node kind = map["kind"];
    if (!kind) {
      fail_line(r.line, "missing 'kind' in " + where +
                            " (expected one of: multiple_choice, generation, perplexity)");
    }
    const std::string kind_text = string_value(kind, r.line, "kind");
    const auto parsed = parse_kind(kind_text);
    if (!parsed) {
      fail(kind, r.line,
           "unknown task kind " + io::quoted(kind_text) +
               " (expected one of: multiple_choice, generation, perplexity)");
    }
    r.kind = *parsed;
    const Keys allowed = concat(kCommonKeys, kind_keys(r.kind));
    const Keys every = concat(concat(kChoiceKeys, kGenerationKeys), kPerplexityKeys);
    const std::string note = "does not apply to kind " + std::string(task_kind_name(r.kind));
    bool has_dataset = false, has_gold = false, has_choices = false;
    for (const Entry& e : entries(map, allowed, where, note, every)) {
      const std::string& k = e.name;
      if (k == "name") {
        r.name = string_value(e);
        if (r.name.empty()) fail_line(e.line, "name must not be empty");
      } else if (k == "kind") {
        // read above
      } else if (k == "dataset") {
        has_dataset = true;
        parse_dataset(e, r);
      } else if (k == "split") {
        r.split = string_value(e);
        r.split_line = e.line;
      } else if (k == "limit") {
        r.limit = static_cast<size_t>(int_value(e, 1));
      } else if (k == "weight") {
        r.weight = number_value(e);
      } else if (k == "metric") {
        r.metric = string_value(e);
        r.metric_line = e.line;
      } else if (k == "add_bos") {
        r.add_bos = bool_value(e);
      } else if (k == "description") {
        r.description = string_value(e);
      } else if (k == "prompt") {
        r.prompt = template_value(e);
      } else if (k == "target") {
        r.target = template_value(e);
      } else if (k == "text") {
        r.text = template_value(e);
      } else if (k == "target_delimiter") {
        r.target_delimiter = string_value(e);
      } else if (k == "fewshot") {
        parse_fewshot(e, r);
      } else if (k == "choices") {
        has_choices = true;
        r.choices_line = e.line;
        if (e.value.IsSequence()) {
          if (e.value.size() == 0) fail_line(e.line, "choices must not be an empty list");
          for (const auto& item : e.value)
            r.choice_templates.push_back(template_value(item, e.line, "choice"));
        } else {
          r.choices_field = string_value(e);
        }
      } else if (k == "gold") {
        has_gold = true;
        r.gold_field = string_value(e);
        r.gold_line = e.line;
      } else if (k == "gold_base") {
        r.gold_base = static_cast<int>(int_value(e, 0));
      } else if (k == "gold_labels") {
        r.gold_labels = strings_value(e);
      } else if (k == "max_tokens") {
        r.max_tokens = static_cast<int>(std::min<long long>(int_value(e, 1), 1 << 30));
      } else if (k == "stop") {
        r.stop = strings_value(e);
        for (const std::string& s : *r.stop) {
          if (s.empty()) fail_line(e.line, "a stop string must not be empty");
        }
      } else if (k == "extract") {
        r.extract = parse_extraction(e);
      } else if (k == "gold_extract") {
        r.gold_extract = parse_extraction(e);
      } else if (k == "normalize") {
        parse_normalize(e, r);
      } else if (k == "stride") {
        r.stride = static_cast<int>(std::min<long long>(int_value(e, 1), 1 << 30));
      }
    }
    if (!has_dataset) fail_line(r.line, "missing 'dataset' in " + where);
    if (r.kind != TaskKind::kPerplexity && !r.prompt) {
      fail_line(r.line, "missing 'prompt' in " + where);
    }
    if (r.kind == TaskKind::kMultipleChoice && !has_choices) {
      fail_line(r.line, "missing 'choices' in " + where + " (a field name or a list of templates)");
    }
    if (r.kind == TaskKind::kMultipleChoice && !has_gold) {
      fail_line(r.line, "missing 'gold' in " + where + " (the field holding the right choice)");
    }
    if (r.kind == TaskKind::kGeneration && !r.target) {
      fail_line(r.line, "missing 'target' in " + where + " (the template of the right answer)");
    }
    if (r.kind == TaskKind::kPerplexity && !r.text) fail_line(r.line, "missing 'text' in " + where);
    check_metric(r);
    return r;
  }

  void parse_dataset(const Entry& e, RawTask& r) {
    r.dataset_line = e.line;
    if (e.value.IsScalar()) {
      r.splits["test"] = {e.value.Scalar(), e.line};
      return;
    }
    for (const Entry& s : entries(e.value, kDatasetKeys, "dataset")) {
      r.splits[s.name] = {string_value(s), s.line};
      if (r.splits[s.name].first.empty()) fail_line(s.line, "dataset " + s.name + " is empty");
    }
    if (r.splits.empty()) fail_line(e.line, "dataset names no file");
  }

  void parse_fewshot(const Entry& e, RawTask& r) {
    r.fewshot_line = e.line;
    for (const Entry& f : entries(e.value, kFewshotKeys, "fewshot")) {
      if (f.name == "count") {
        r.fewshot_count = static_cast<size_t>(int_value(f, 0));
      } else if (f.name == "split") {
        r.fewshot_split = string_value(f);
      } else if (f.name == "separator") {
        r.separator = string_value(f);
      }
    }
  }

  Extraction parse_extraction(const Entry& e) {
    Extraction x;
    if (e.value.IsScalar()) {
      const std::string s = e.value.Scalar();
      if (s == "last_number") {
        x.kind = Extraction::Kind::kLastNumber;
      } else if (s != "none") {
        fail_line(e.line, e.name + " " + io::quoted(s) +
                              " is not one of: none, last_number, {regex: ..., match: first|last}");
      }
      return x;
    }
    x.kind = Extraction::Kind::kRegex;
    bool has_regex = false;
    for (const Entry& f : entries(e.value, kExtractKeys, e.name)) {
      if (f.name == "regex") {
        has_regex = true;
        x.pattern = string_value(f);
        check_regex(x.pattern, f.line);
      } else if (f.name == "match") {
        const std::string m = string_value(f);
        if (m != "first" && m != "last") fail_line(f.line, "match must be first or last");
        x.last_match = m == "last";
      }
    }
    if (!has_regex) fail_line(e.line, "missing 'regex' in " + e.name);
    return x;
  }

  void parse_normalize(const Entry& e, RawTask& r) {
    for (const Entry& f : entries(e.value, kNormalizeKeys, "normalize")) {
      if (f.name == "ignore") {
        r.normalize.ignore = strings_value(f);
        for (const std::string& p : r.normalize.ignore) check_regex(p, f.line);
      } else if (f.name == "remove_commas") {
        r.normalize.remove_commas = bool_value(f);
      } else if (f.name == "lower") {
        r.normalize.lower = bool_value(f);
      } else if (f.name == "strip") {
        r.normalize.strip = bool_value(f);
      } else if (f.name == "numbers") {
        r.normalize.numbers = bool_value(f);
      }
    }
  }

  void check_regex(const std::string& pattern, int line) const {
    try {
      extract_answer({Extraction::Kind::kRegex, pattern, false}, "");
    } catch (const ConfigError& err) {
      fail_line(line, err.what());
    }
  }

  void check_metric(RawTask& r) const {
    Keys valid;
    switch (r.kind) {
      case TaskKind::kMultipleChoice:
        valid = {"acc", "acc_norm"};
        break;
      case TaskKind::kGeneration:
        valid = {"exact_match"};
        break;
      case TaskKind::kPerplexity:
        valid = {"perplexity", "bits_per_byte"};
        break;
    }
    if (r.metric.empty()) {
      r.metric = std::string(valid.front());
    } else if (std::find(valid.begin(), valid.end(), r.metric) == valid.end()) {
      fail_line(r.metric_line, "metric '" + r.metric + "' is not one of " + join(valid) +
                                   " for kind " + std::string(task_kind_name(r.kind)));
    }
  }

  std::filesystem::path path_;
  std::string file_;
  std::optional<std::string> split_;
};

}  // namespace

std::string_view task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::kMultipleChoice:
      return "multiple_choice";
    case TaskKind::kGeneration:
      return "generation";
    case TaskKind::kPerplexity:
      return "perplexity";
  }
  return "?";
}

std::vector<TaskSpec> parse_tasks(std::string_view yaml_text, const std::filesystem::path& file) {
  return Parser(file).parse(yaml_text);
}

namespace {
std::string read_task_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open task file " + file.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(errno_message("cannot read task file " + file.string()));
  return text.str();
}
}  // namespace

std::vector<TaskSpec> load_tasks(const std::filesystem::path& file) {
  return parse_tasks(read_task_file(file), file);
}

std::vector<TaskSpec> load_tasks(const std::filesystem::path& file, const std::string& split) {
  return Parser(file, split).parse(read_task_file(file));
}

}  // namespace shoal
