// The parameters of the population algorithm, read from the task's `algorithm` mapping. Every key
// is read here with its default, type and range; to_json() is the normalised set the database
// stores (and compares on --resume).
#include <cmath>
#include <set>

#include "eval/template.h"
#include "shoal/error.h"
#include "shoal/population.h"
#include "shoal/subprocess.h"

namespace shoal {
namespace {

using nlohmann::json;

const std::set<std::string> kOperators = {"diff", "rewrite", "crossover", "fix", "new"};
const std::set<std::string> kTemplateFields = {"problem",  "language",  "program",     "score",
                                               "metrics",  "feedback",  "program2",    "score2",
                                               "metrics2", "feedback2", "inspirations"};

class Reader {
 public:
  Reader(std::string where, const json& in) : where_(std::move(where)), in_(in) {
    if (!in_.is_object()) throw ConfigError(where_ + ": expected a mapping");
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    std::string got = in_.contains(key) ? in_.at(key).dump() : "nothing";
    if (got.size() > 60) got = got.substr(0, 57) + "...";
    throw ConfigError(where_ + ": '" + key + "': expected " + expected + ", got " + got);
  }
  const json* find(const std::string& key) {
    known_.insert(key);
    const auto it = in_.find(key);
    return it == in_.end() || it->is_null() ? nullptr : &*it;
  }
  double number(const std::string& key, double def, double lo, double hi) {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_number() || !(v->get<double>() >= lo && v->get<double>() <= hi)) {
      fail(key, "a number in [" + json(lo).dump() + ", " + json(hi).dump() + "]");
    }
    return v->get<double>();
  }
  int integer(const std::string& key, int def, int lo, int hi) {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi) {
      fail(key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return static_cast<int>(v->get<int64_t>());
  }
  bool boolean(const std::string& key, bool def) {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) fail(key, "true or false");
    return v->get<bool>();
  }
  std::string text(const std::string& key, const std::string& def) {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_string() || v->get<std::string>().empty()) fail(key, "a non-empty text");
    return v->get<std::string>();
  }
  // Rejects the keys nobody read.
  void finish() const {
    for (auto it = in_.begin(); it != in_.end(); ++it) {
      if (known_.count(it.key()) == 0) {
        std::string list;
        for (const std::string& k : known_) list += (list.empty() ? "" : ", ") + k;
        throw ConfigError(where_ + ": unknown key '" + it.key() + "' (known: " + list + ")");
      }
    }
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
  const json& in_;
  std::set<std::string> known_;
};

std::vector<std::string> command_argv(Reader& r, const json* v) {
  if (v->is_string() && !v->get<std::string>().empty()) return shell_argv(v->get<std::string>());
  if (v->is_array() && !v->empty()) {
    std::vector<std::string> argv;
    for (const json& a : *v) {
      if (!a.is_string()) r.fail("command", "a text or a list of texts");
      argv.push_back(a.get<std::string>());
    }
    return argv;
  }
  r.fail("command", "a text or a non-empty list of texts");
}

}  // namespace

PopulationParams parse_population_params(const json& params,
                                         const std::filesystem::path& task_dir) {
  Reader r("algorithm (population)", params);
  PopulationParams p;
  p.islands = r.integer("islands", p.islands, 1, 64);
  if (const json* v = r.find("initial")) {
    if (!v->is_string() || v->get<std::string>().empty()) r.fail("initial", "a file path");
    const std::filesystem::path f(v->get<std::string>());
    p.initial = f.is_absolute() ? f : task_dir / f;
    if (!std::filesystem::is_regular_file(p.initial)) {
      throw ConfigError(r.where() + ": 'initial': " + p.initial.string() + " is not a file");
    }
    p.file_name = p.initial.filename().string();
  }
  p.language = r.text("language", p.language);
  p.file_name = r.text("file_name", p.file_name);
  if (p.file_name.find('/') != std::string::npos || p.file_name == "." || p.file_name == "..") {
    r.fail("file_name", "a plain file name");
  }
  p.migration_interval = r.integer("migration_interval", p.migration_interval, 0, 1000000);
  p.migration_fraction = r.number("migration_fraction", p.migration_fraction, 0, 1);
  if (const json* v = r.find("grid")) {
    if (!v->is_array() || v->empty() || v->size() > 4) {
      r.fail("grid", "a list of 1 to 4 descriptors {metric, min, max, bins}");
    }
    p.grid.clear();
    for (size_t i = 0; i < v->size(); ++i) {
      Reader d("algorithm (population): grid[" + std::to_string(i) + "]", (*v)[i]);
      PopulationDescriptor desc;
      desc.metric = d.text("metric", desc.metric);
      desc.min = d.number("min", 0, -1e300, 1e300);
      desc.max = d.number("max", desc.min + 1, -1e300, 1e300);
      desc.bins = d.integer("bins", desc.bins, 1, 1000);
      if (!(desc.max > desc.min)) d.fail("max", "a number above min");
      d.finish();
      p.grid.push_back(desc);
    }
  }
  p.archive_size = r.integer("archive_size", p.archive_size, 1, 100000);
  if (const json* v = r.find("operators")) {
    Reader o("algorithm (population): operators", *v);
    p.op_diff = o.number("diff", p.op_diff, 0, 1e6);
    p.op_rewrite = o.number("rewrite", p.op_rewrite, 0, 1e6);
    p.op_crossover = o.number("crossover", p.op_crossover, 0, 1e6);
    o.finish();
    if (p.op_diff + p.op_rewrite + p.op_crossover <= 0) {
      o.fail("diff", "weights that are not all 0");
    }
  }
  p.cross_island = r.number("cross_island", p.cross_island, 0, 1);
  p.selection_beta = r.number("selection_beta", p.selection_beta, 0, 1000);
  p.child_penalty = r.number("child_penalty", p.child_penalty, 0, 1000);
  p.inspirations = r.integer("inspirations", p.inspirations, 0, 20);
  p.diff_retries = r.integer("diff_retries", p.diff_retries, 0, 10);
  if (const json* v = r.find("novelty")) {
    if (v->is_boolean()) {
      p.novelty.enabled = v->get<bool>();
    } else {
      Reader n("algorithm (population): novelty", *v);
      p.novelty.enabled = n.boolean("enabled", true);
      p.novelty.threshold = n.number("threshold", p.novelty.threshold, 0, 1);
      p.novelty.retries = n.integer("retries", p.novelty.retries, 0, 10);
      p.novelty.shingle = n.integer("shingle", p.novelty.shingle, 1, 16);
      p.novelty.hashes = n.integer("hashes", p.novelty.hashes, 8, 1024);
      n.finish();
    }
  }
  if (const json* v = r.find("bandit")) {
    Reader b("algorithm (population): bandit", *v);
    p.bandit_exploration = b.number("exploration", p.bandit_exploration, 0, 100);
    p.bandit_cost_weight = b.number("cost_weight", p.bandit_cost_weight, 0, 100);
    b.finish();
  }
  if (const json* v = r.find("cascade")) {
    Reader c("algorithm (population): cascade", *v);
    const json* cmd = c.find("command");
    if (cmd == nullptr) c.fail("command", "the first stage's command");
    p.cascade.argv = command_argv(c, cmd);
    p.cascade.timeout_s = c.number("timeout_s", p.cascade.timeout_s, 0.001, 86400);
    p.cascade.min_score = c.number("min_score", p.cascade.min_score, -1e300, 1e300);
    c.finish();
  }
  p.max_feedback_chars = r.integer("max_feedback_chars", p.max_feedback_chars, 0, 1000000);
  p.max_evaluations = r.integer("max_evaluations", 0, 0, 1000000000);
  if (const json* v = r.find("templates")) {
    Reader t("algorithm (population): templates", *v);
    for (const std::string& op : kOperators) {
      if (const json* x = t.find(op)) {
        if (!x->is_string()) t.fail(op, "a text (the user message)");
        std::string error;
        const auto tmpl = eval::Template::parse(x->get<std::string>(), &error);
        if (!tmpl) throw ConfigError(t.where() + ": '" + op + "': " + error);
        for (const std::string& f : tmpl->fields()) {
          if (kTemplateFields.count(f) == 0) {
            throw ConfigError(t.where() + ": '" + op + "' uses {" + f +
                              "}; the fields are {problem}, {language}, {program}, {score}, "
                              "{metrics}, {feedback}, {program2}, {score2}, {metrics2}, "
                              "{feedback2}, {inspirations} ({{ and }} are literal braces)");
          }
        }
        p.templates[op] = x->get<std::string>();
      }
    }
    t.finish();
  }
  r.finish();
  return p;
}

nlohmann::json PopulationParams::to_json() const {
  json grid_j = json::array();
  for (const PopulationDescriptor& d : grid) {
    grid_j.push_back({{"metric", d.metric}, {"min", d.min}, {"max", d.max}, {"bins", d.bins}});
  }
  json cascade_j = nullptr;
  if (!cascade.argv.empty()) {
    cascade_j = {{"command", cascade.argv},
                 {"timeout_s", cascade.timeout_s},
                 {"min_score", cascade.min_score}};
  }
  return {{"islands", islands},
          {"initial", initial.empty() ? json(nullptr) : json(initial.filename().string())},
          {"language", language},
          {"file_name", file_name},
          {"migration_interval", migration_interval},
          {"migration_fraction", migration_fraction},
          {"grid", grid_j},
          {"archive_size", archive_size},
          {"operators", {{"diff", op_diff}, {"rewrite", op_rewrite}, {"crossover", op_crossover}}},
          {"cross_island", cross_island},
          {"selection_beta", selection_beta},
          {"child_penalty", child_penalty},
          {"inspirations", inspirations},
          {"diff_retries", diff_retries},
          {"novelty",
           {{"enabled", novelty.enabled},
            {"threshold", novelty.threshold},
            {"retries", novelty.retries},
            {"shingle", novelty.shingle},
            {"hashes", novelty.hashes}}},
          {"bandit", {{"exploration", bandit_exploration}, {"cost_weight", bandit_cost_weight}}},
          {"cascade", cascade_j},
          {"max_feedback_chars", max_feedback_chars},
          {"max_evaluations", max_evaluations},
          {"templates", templates}};
}

}  // namespace shoal
