// RunState <-> checkpoint JSON. Doubles keep their exact bits (nlohmann writes the shortest
// round-trip form and reads it correctly rounded), so a resumed run continues bit-identically.
// Every key is checked on load: a corrupt checkpoint is one FormatError naming the file and key.
#include <cmath>
#include <fstream>

#include "evolve/evolve_state.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kFormat = "shoal-evolve-run";

json number(double x) {
  if (std::isfinite(x)) return x;
  return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(file_ + ": " + what + " (a corrupt checkpoint; remove it to start again)");
  }
  const json& member(const json& j, const std::string& key, const std::string& where) const {
    if (!j.is_object() || !j.contains(key)) fail("missing key '" + key + "' in " + where);
    return j.at(key);
  }
  double as_double(const json& v, const std::string& what) const {
    if (v.is_number()) return v.get<double>();
    if (v == "nan") return std::nan("");
    if (v == "inf") return INFINITY;
    if (v == "-inf") return -INFINITY;
    fail(what + " is not a number");
  }
  int64_t as_index(const json& v, const std::string& what) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) fail(what + " is not a count");
    return v.get<int64_t>();
  }
  std::vector<double> as_vector(const json& v, size_t n, const std::string& what) const {
    if (!v.is_array() || v.size() != n) {
      fail(what + " must be a list of " + std::to_string(n) + " numbers");
    }
    std::vector<double> out;
    for (const auto& x : v) out.push_back(as_double(x, what));
    return out;
  }
  std::string as_string(const json& v, const std::string& what) const {
    if (!v.is_string()) fail(what + " is not a string");
    return v.get<std::string>();
  }

 private:
  std::string file_;
};

// The first key (dotted path) whose value differs, for the resume message.
std::string first_difference(const json& a, const json& b, const std::string& path) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [k, v] : a.items()) {
      const std::string p = path.empty() ? k : path + "." + k;
      if (!b.contains(k)) return p;
      if (v != b.at(k)) return first_difference(v, b.at(k), p);
    }
    for (const auto& [k, v] : b.items()) {
      if (!a.contains(k)) return path.empty() ? k : path + "." + k;
    }
  }
  return path.empty() ? "the config" : path;
}

}  // namespace

std::optional<size_t> RunState::best() const {
  std::optional<size_t> b;
  for (const size_t i : history) {
    const CandidateMetrics& m = cache[i].metrics;
    if (m.ok && (!b || m.score > cache[*b].metrics.score)) b = i;
  }
  return b;
}

int64_t RunState::failures() const {
  int64_t n = 0;
  for (const size_t i : history) n += cache[i].metrics.ok ? 0 : 1;
  return n;
}

size_t RunState::remember(const std::vector<double>& genome, const CandidateMetrics& metrics) {
  const auto [it, added] = cache_index.emplace(genome, cache.size());
  if (added) cache.push_back({genome, metrics});
  return it->second;
}

json metrics_to_json(const CandidateMetrics& m) {
  json scores = json::object();
  for (const auto& [task, v] : m.task_scores) scores[task] = number(v);
  json j = {{"ok", m.ok}, {"score", number(m.score)}, {"scores", scores}};
  if (!m.ok) j["error"] = m.error;
  return j;
}

json state_to_json(const RunState& s, const EvolveConfig& config) {
  json evaluated = json::array();
  for (const CacheEntry& e : s.cache) {
    json g = json::array();
    for (const double x : e.genome) g.push_back(number(x));
    json m = metrics_to_json(e.metrics);
    m["genome"] = std::move(g);
    evaluated.push_back(std::move(m));
  }
  return {{"format", kFormat},
          {"version", 1},
          {"config", config.identity()},
          {"config_dir", config.base_dir.string()},
          {"phase", s.phase},
          {"dimension", s.optimizer->dimension()},
          {"elapsed_seconds", s.elapsed_s},
          {"log_bytes", s.log_bytes},
          {"optimizer", s.optimizer->save()},
          {"archive", s.archive ? s.archive->to_json() : json(nullptr)},
          {"evaluated", std::move(evaluated)},
          {"history", s.history},
          {"generation_ends", s.generation_ends}};
}

RunState state_from_json(const json& j, const EvolveConfig& config, size_t dimension,
                         const fs::path& file) {
  const Reader r(file.string());
  if (!j.is_object() || j.value("format", json()) != kFormat) {
    r.fail("not a shoal evolve checkpoint (\"format\" is not \"" + std::string(kFormat) + "\")");
  }
  if (j.value("version", json()) != 1)
    r.fail("unsupported version " + j.value("version", json()).dump());
  const json& identity = r.member(j, "config", "the checkpoint");
  const json expected = config.identity();
  if (identity != expected) {
    throw ConfigError(file.string() + ": written by a run with another config (" +
                      first_difference(expected, identity, "") +
                      " differs); resume with the same config, only the budget may change");
  }
  const int64_t dim = r.as_index(r.member(j, "dimension", "the checkpoint"), "dimension");
  if (size_t(dim) != dimension) {
    throw ConfigError(file.string() + ": the checkpoint's genome has " + std::to_string(dim) +
                      " values, this config's genome has " + std::to_string(dimension));
  }

  RunState s;
  s.elapsed_s = r.as_double(r.member(j, "elapsed_seconds", "the checkpoint"), "elapsed_seconds");
  s.log_bytes = uint64_t(r.as_index(r.member(j, "log_bytes", "the checkpoint"), "log_bytes"));
  try {
    s.optimizer = load_optimizer(r.member(j, "optimizer", "the checkpoint"));
    const json& a = r.member(j, "archive", "the checkpoint");
    if (!a.is_null()) s.archive = MapElitesArchive::from_json(a);
  } catch (const FormatError& e) {
    r.fail(e.what());
  } catch (const ConfigError& e) {
    r.fail(e.what());
  }
  if (size_t(s.optimizer->dimension()) != dimension) r.fail("the optimizer's dimension differs");
  if (s.archive.has_value() != !config.qd_axes.empty()) {
    r.fail("the archive does not match quality_diversity in the config");
  }

  const json& evaluated = r.member(j, "evaluated", "the checkpoint");
  if (!evaluated.is_array()) r.fail("'evaluated' must be a list");
  for (size_t i = 0; i < evaluated.size(); ++i) {
    const json& e = evaluated[i];
    const std::string where = "evaluated[" + std::to_string(i) + "]";
    CacheEntry c;
    c.genome = r.as_vector(r.member(e, "genome", where), dimension, where + ".genome");
    const json& ok = r.member(e, "ok", where);
    if (!ok.is_boolean()) r.fail(where + ".ok is not true or false");
    c.metrics.ok = ok.get<bool>();
    c.metrics.score = r.as_double(r.member(e, "score", where), where + ".score");
    const json& scores = r.member(e, "scores", where);
    if (!scores.is_object()) r.fail(where + ".scores is not an object");
    for (const auto& [task, v] : scores.items()) {
      c.metrics.task_scores[task] = r.as_double(v, where + ".scores." + task);
    }
    if (!c.metrics.ok) c.metrics.error = r.as_string(r.member(e, "error", where), where + ".error");
    if (!s.cache_index.emplace(c.genome, s.cache.size()).second) {
      r.fail(where + " repeats an earlier genome");
    }
    s.cache.push_back(std::move(c));
  }
  const json& history = r.member(j, "history", "the checkpoint");
  if (!history.is_array()) r.fail("'history' must be a list");
  for (const auto& h : history) {
    const int64_t i = r.as_index(h, "a history entry");
    if (size_t(i) >= s.cache.size()) r.fail("a history entry points past 'evaluated'");
    s.history.push_back(size_t(i));
  }
  const json& ends = r.member(j, "generation_ends", "the checkpoint");
  if (!ends.is_array() || int64_t(ends.size()) != s.optimizer->generation()) {
    r.fail("'generation_ends' must have one entry per optimizer generation");
  }
  size_t last = 0;
  for (const auto& e : ends) {
    const size_t end = size_t(r.as_index(e, "a generation end"));
    if (end < last || end > s.history.size()) r.fail("'generation_ends' is not increasing");
    s.generation_ends.push_back(last = end);
  }
  if (last != s.history.size() || int64_t(s.history.size()) != s.optimizer->evaluations()) {
    r.fail("'history' does not match the optimizer's evaluations");
  }
  return s;
}

void write_json_atomic(const fs::path& path, const json& j) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << j.dump() << '\n';
    out.flush();
    if (!out) throw IoError(errno_message("cannot write " + tmp.string()));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + path.string()));
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError(path.string() + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace shoal::evolve
