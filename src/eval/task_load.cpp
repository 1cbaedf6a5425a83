// RawTask -> TaskSpec: reads the datasets and renders every sample once, so a missing field
// stops the run before a model is loaded, not after an hour of evaluation.
#include <algorithm>
#include <sstream>

#include "eval/task_raw.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::eval {
namespace {

class Loader {
 public:
  explicit Loader(std::filesystem::path file) : path_(std::move(file)), file_(path_.string()) {}

  std::filesystem::path resolve(const std::string& p) const {
    const std::filesystem::path path(p);
    return path.is_absolute() ? path : path_.parent_path() / path;
  }

  static bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
    std::error_code ec;
    if (std::filesystem::equivalent(a, b, ec)) return true;
    return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
  }

  TaskSpec load(const RawTask& r) const {
    TaskSpec t;
    t.file = path_;
    t.line = r.line;
    t.name = r.name;
    t.kind = r.kind;
    t.split = r.split;
    t.limit = r.limit;
    t.weight = r.weight;
    t.metric = r.metric;
    t.add_bos = r.add_bos;
    t.target_delimiter = r.target_delimiter;
    t.max_tokens = r.max_tokens;
    t.stop = r.stop ? *r.stop : std::vector<std::string>{r.separator};
    t.extract = r.extract;
    t.gold_extract = r.gold_extract;
    t.normalize = r.normalize;
    t.stride = r.stride;

    const auto split = r.splits.find(r.split);
    if (split == r.splits.end()) {
      std::string have;
      for (const auto& [name, _] : r.splits) have += (have.empty() ? "" : ", ") + name;
      fail_line(r.split_line > 0 ? r.split_line : r.dataset_line,
                "split '" + r.split + "' is not in dataset (it has: " + have + ")");
    }
    t.data_file = resolve(split->second.first);
    // Few-shot settings are checked before any data is read.
    std::filesystem::path shots_file;
    if (r.fewshot_count > 0) {
      const auto source = r.splits.find(r.fewshot_split);
      if (source == r.splits.end()) {
        fail_line(r.fewshot_line, "few-shot split '" + r.fewshot_split + "' is not in dataset");
      }
      shots_file = resolve(source->second.first);
      if (r.fewshot_split == r.split || same_file(shots_file, t.data_file)) {
        fail_line(r.fewshot_line, "few-shot examples would come from the evaluated split '" +
                                      r.split + "' (" + shots_file.string() +
                                      "); take them from another split (fewshot: split: train)");
      }
    }
    const std::vector<JsonlRecord> records = read_jsonl(t.data_file);
    const size_t n = std::min(records.size(), r.limit.value_or(records.size()));
    if (n == 0)
      fail_line(split->second.second, "dataset " + t.data_file.string() + " has no records");
    for (size_t i = 0; i < n; ++i) {
      TaskSample s = render(r, records[i], t.data_file);
      s.index = i;
      s.line = records[i].line;
      t.samples.push_back(std::move(s));
    }

    t.fewshot_prefix = r.description;
    if (r.fewshot_count > 0) {
      const std::vector<JsonlRecord> shots = read_jsonl(shots_file);
      if (shots.size() < r.fewshot_count) {
        fail_line(r.fewshot_line, "fewshot count " + std::to_string(r.fewshot_count) + " but " +
                                      shots_file.string() + " has " + std::to_string(shots.size()) +
                                      " records");
      }
      for (size_t i = 0; i < r.fewshot_count; ++i) {
        const TaskSample s = render(r, shots[i], shots_file);
        const std::string answer =
            r.kind == TaskKind::kMultipleChoice ? s.choices[static_cast<size_t>(s.gold)] : s.target;
        t.fewshot_prefix += s.prompt + r.target_delimiter + answer + r.separator;
      }
      t.n_fewshot = r.fewshot_count;
    }
    return t;
  }

  std::string used_by(const char* key, int line) const {
    return key + std::string(", ") + file_ + ":" + std::to_string(line);
  }

  TaskSample render(const RawTask& r, const JsonlRecord& rec,
                    const std::filesystem::path& data) const {
    const std::string where = data.string() + ":" + std::to_string(rec.line);
    TaskSample s;
    switch (r.kind) {
      case TaskKind::kPerplexity:
        s.prompt = r.text->tmpl.render(rec.value, where, used_by("text", r.text->line));
        break;
      case TaskKind::kGeneration: {
        s.prompt = r.prompt->tmpl.render(rec.value, where, used_by("prompt", r.prompt->line));
        s.target = r.target->tmpl.render(rec.value, where, used_by("target", r.target->line));
        const auto answer = extract_answer(r.gold_extract, s.target);
        if (!answer) {
          throw FormatError(where + ": gold_extract finds no answer in the target " +
                            io::quoted(s.target));
        }
        s.answer = normalize_answer(r.normalize, *answer);
        break;
      }
      case TaskKind::kMultipleChoice:
        s.prompt = r.prompt->tmpl.render(rec.value, where, used_by("prompt", r.prompt->line));
        s.choices = choices(r, rec, where);
        s.gold = gold(r, rec, where, s.choices);
        break;
    }
    return s;
  }

  std::vector<std::string> choices(const RawTask& r, const JsonlRecord& rec,
                                   const std::string& where) const {
    std::vector<std::string> out;
    if (r.choices_field) {
      const nlohmann::json* v = find_field(rec.value, *r.choices_field);
      if (v == nullptr) {
        throw FormatError(where + ": missing field " + io::quoted(*r.choices_field) + " (used by " +
                          used_by("choices", r.choices_line) + ")");
      }
      if (!v->is_array() || v->empty()) {
        throw FormatError(where + ": field " + io::quoted(*r.choices_field) +
                          " must be a non-empty list of strings, got " + io::bounded_dump(*v));
      }
      for (const auto& item : *v) {
        const auto text = field_text(item);
        if (!text) {
          throw FormatError(where + ": field " + io::quoted(*r.choices_field) + " holds " +
                            io::bounded_dump(item) + ", expected strings");
        }
        out.push_back(*text);
      }
    } else {
      for (const LinedTemplate& c : r.choice_templates) {
        out.push_back(c.tmpl.render(rec.value, where, used_by("choices", c.line)));
      }
    }
    for (size_t i = 0; i < out.size(); ++i) {
      // acc_norm divides by the choice's length, so an empty choice has no score.
      if (out[i].empty()) throw FormatError(where + ": choice " + std::to_string(i) + " is empty");
    }
    return out;
  }

  int gold(const RawTask& r, const JsonlRecord& rec, const std::string& where,
           const std::vector<std::string>& choices) const {
    const nlohmann::json* v = find_field(rec.value, r.gold_field);
    if (v == nullptr) {
      throw FormatError(where + ": missing field " + io::quoted(r.gold_field) + " (used by " +
                        used_by("gold", r.gold_line) + ")");
    }
    long long index = -1;
    bool found = false;
    if (v->is_number_integer()) {
      index = v->get<long long>() - r.gold_base;
      found = true;
    } else if (v->is_string()) {
      const std::string s = v->get<std::string>();
      if (!r.gold_labels.empty()) {
        const auto it = std::find(r.gold_labels.begin(), r.gold_labels.end(), s);
        if (it != r.gold_labels.end()) {
          index = it - r.gold_labels.begin();
          found = true;
        }
      } else if (const auto it = std::find(choices.begin(), choices.end(), s);
                 it != choices.end()) {
        index = it - choices.begin();
        found = true;
      } else {
        std::istringstream in(s);
        if (in >> index && in.eof()) {
          index -= r.gold_base;
          found = true;
        }
      }
    }
    if (!found) {
      throw FormatError(where + ": gold " + io::bounded_dump(*v) + " in field " +
                        io::quoted(r.gold_field) +
                        " is neither an index, a choice nor one of gold_labels");
    }
    if (index < 0 || index >= static_cast<long long>(choices.size())) {
      throw FormatError(where + ": gold " + io::bounded_dump(*v) + " is out of range for " +
                        std::to_string(choices.size()) + " choices (gold_base " +
                        std::to_string(r.gold_base) + ")");
    }
    return static_cast<int>(index);
  }

 private:
  [[noreturn]] void fail_line(int line, const std::string& message) const {
    throw ConfigError(file_ + ":" + std::to_string(line) + ": " + message);
  }

  std::filesystem::path path_;
  std::string file_;
};

}  // namespace

TaskSpec load_task(const RawTask& raw, const std::filesystem::path& task_file) {
  return Loader(task_file).load(raw);
}

}  // namespace shoal::eval
