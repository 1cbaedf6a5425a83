// The files of a `shoal search` output folder and its terminal output; see search_run_output.h.
#include "search/search_run_output.h"

#include <unistd.h>

#include <cstdio>

#include "shoal/error.h"

namespace shoal::search {

nlohmann::json RunTotals::to_json() const {
  return {{"calls", calls},
          {"failed_calls", failed_calls},
          {"scorer_failures", scorer_failures},
          {"input_tokens", input_tokens},
          {"output_tokens", output_tokens},
          {"cost_usd", cost_usd},
          {"wall_s", wall_s},
          {"runs", runs}};
}

RunTotals RunTotals::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw FormatError("tree.json: 'totals' must be an object");
  const auto get_int = [&](const char* key) -> int64_t {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
      throw FormatError(std::string("tree.json: totals.") + key + ": expected an integer >= 0");
    }
    return it->get<int64_t>();
  };
  const auto get_num = [&](const char* key) -> double {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number() || it->get<double>() < 0) {
      throw FormatError(std::string("tree.json: totals.") + key + ": expected a number >= 0");
    }
    return it->get<double>();
  };
  RunTotals t;
  t.calls = get_int("calls");
  t.failed_calls = get_int("failed_calls");
  t.scorer_failures = get_int("scorer_failures");
  t.input_tokens = get_int("input_tokens");
  t.output_tokens = get_int("output_tokens");
  t.cost_usd = get_num("cost_usd");
  t.wall_s = get_num("wall_s");
  t.runs = get_int("runs");
  return t;
}

nlohmann::json tree_json(const SearchTask& task, const std::vector<LlmBackend*>& backends,
                         const Search& search, const RunTotals& totals, const std::string& status) {
  nlohmann::json models = nlohmann::json::array();
  for (size_t i = 0; i < task.models.size(); ++i) {
    models.push_back({{"name", task.models[i].name},
                      {"backend", task.models[i].backend},
                      {"describe", backends[i]->describe()}});
  }
  return {{"format", kTreeFormat},
          {"version", kTreeVersion},
          {"task", task.file.string()},
          {"algorithm", search.algorithm()},
          {"models", std::move(models)},
          {"totals", totals.to_json()},
          {"status", status},
          {"search", search.checkpoint()}};
}

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

SavedRun load_tree(const std::filesystem::path& path, const SearchTask& task) {
  const std::string where = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + where));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || j.value("format", "") != kTreeFormat || !j.contains("search") ||
      !j.contains("totals")) {
    throw FormatError(where + ": not a shoal search tree (format '" + kTreeFormat + "')");
  }
  if (j.value("version", 0) != kTreeVersion) {
    throw FormatError(where + ": version " + j["version"].dump() + " (this shoal reads " +
                      std::to_string(kTreeVersion) + ")");
  }
  std::vector<std::string> names, want;
  if (j.contains("models") && j["models"].is_array()) {
    for (const auto& m : j["models"]) {
      names.push_back(m.is_object() && m.contains("name") && m["name"].is_string()
                          ? m["name"].get<std::string>()
                          : "?");
    }
  }
  for (const SearchModel& m : task.models) want.push_back(m.name);
  if (names != want) {
    throw ConfigError(where + " was searched with models [" + join(names) + "], the task has [" +
                      join(want) + "]: the models (names and order) must stay the same");
  }
  SavedRun saved{resume_search(j["search"]), RunTotals::from_json(j["totals"])};
  const Search& s = *saved.search;
  const auto fresh = make_search(
      {task.algorithm, task.algorithm_params, static_cast<int>(task.models.size()), task.seed});
  if (s.algorithm() != fresh->algorithm() || s.params() != fresh->params() ||
      s.seed() != fresh->seed()) {
    throw ConfigError(where + " holds a " + std::string(s.algorithm()) + " search with " +
                      s.params().dump() + " and seed " + std::to_string(s.seed()) +
                      "; the task asks for " + std::string(fresh->algorithm()) + " with " +
                      fresh->params().dump() + " and seed " + std::to_string(fresh->seed()));
  }
  return saved;
}

void write_file_atomic(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) throw IoError(errno_message("cannot write " + tmp.string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

void write_best(const std::filesystem::path& out_dir, const Search& search,
                const std::vector<LlmBackend*>& backends, int k) {
  const std::filesystem::path dir = out_dir / "best";
  std::filesystem::create_directories(dir);
  nlohmann::json list = nlohmann::json::array();
  int rank = 0;
  for (const int64_t id : search.top_k(k)) {
    const SearchNode& n = search.node(id);
    const std::string file = std::to_string(++rank) + ".txt";
    write_file_atomic(dir / file, n.state);
    nlohmann::json entry = {
        {"rank", rank},     {"file", file},
        {"node", n.id},     {"model", backends.at(static_cast<size_t>(n.action))->name()},
        {"score", n.score}, {"depth", n.depth}};
    if (n.meta.is_object() && n.meta.contains("feedback")) entry["feedback"] = n.meta["feedback"];
    list.push_back(std::move(entry));
  }
  write_file_atomic(dir / "best.json", list.dump(2) + "\n");
}

CallLog::CallLog(const std::filesystem::path& path, bool append)
    : path_(path), out_(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc)) {
  if (!out_) throw IoError(errno_message("cannot open " + path.string()));
}

void CallLog::write(const nlohmann::json& line) {
  out_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  out_.flush();
  if (!out_) throw IoError(errno_message("cannot write " + path_.string()));
}

StatusLine::StatusLine(LogMode mode) : mode_(mode), tty_(isatty(fileno(stderr)) == 1) {}

void StatusLine::update(const std::string& text) {
  if (mode_ != LogMode::kHuman || !tty_) return;
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (open_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  std::fprintf(stderr, "\r\033[K%s", text.c_str());
  std::fflush(stderr);
  open_ = true;
}

void StatusLine::event(nlohmann::json fields) {
  if (mode_ != LogMode::kJson) return;
  std::lock_guard lock(mutex_);
  fields["task"] = "search";
  std::fprintf(stderr, "%s\n",
               fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  std::fflush(stderr);
}

void StatusLine::clear_locked() {
  if (open_) std::fputs("\r\033[K", stderr);
  open_ = false;
}

void StatusLine::warn(const std::string& message) {
  std::lock_guard lock(mutex_);
  if (mode_ == LogMode::kJson) {
    const nlohmann::json j = {{"event", "warning"}, {"task", "search"}, {"message", message}};
    std::fprintf(stderr, "%s\n",
                 j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    clear_locked();
    std::fprintf(stderr, "warning: %s\n", message.c_str());
  }
  std::fflush(stderr);
}

void StatusLine::finish(const std::string& text) {
  std::lock_guard lock(mutex_);
  if (mode_ == LogMode::kHuman) {
    clear_locked();
    std::fprintf(stderr, "%s\n", text.c_str());
  } else if (mode_ == LogMode::kJson) {
    const nlohmann::json j = {{"event", "done"}, {"task", "search"}, {"message", text}};
    std::fprintf(stderr, "%s\n", j.dump().c_str());
  }
  std::fflush(stderr);
}

}  // namespace shoal::search
