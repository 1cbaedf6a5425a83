// Task files of `shoal search` (YAML) -> SearchTask. Every mapping is walked key by key, so an
// unknown or misplaced key is reported with its line, as in recipes and eval tasks.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "eval/template.h"
#include "shoal/error.h"
#include "shoal/population.h"
#include "shoal/search.h"
#include "shoal/search_run.h"
#include "shoal/subprocess.h"

namespace shoal {

const char* const kDefaultRefineTemplate =
    "{problem}\n\n"
    "Here is an earlier answer:\n\n"
    "{answer}\n\n"
    "It scored {score} (1 is best). Feedback on it:\n\n"
    "{feedback}\n\n"
    "Write an improved answer to the problem.";

namespace {

using Keys = std::vector<std::string_view>;

const Keys kTopKeys = {"problem", "system",      "refine",    "models", "scorer",
                       "budget",  "concurrency", "algorithm", "seed",   "best"};
const Keys kScorerKeys = {"command", "timeout_s", "memory_mb", "env"};
const Keys kBudgetKeys = {"calls", "cost_usd", "wall_s"};
const Keys kModelCommonKeys = {"name", "backend"};
const Keys kHttpKeys = {
    "base_url",    "model",       "api_key_env",   "temperature",       "top_p",
    "max_tokens",  "stop",        "extra_body",    "timeout_s",         "connect_timeout_s",
    "max_retries", "backoff_s",   "backoff_max_s", "retry_after_max_s", "concurrency",
    "price_input", "price_output"};
const Keys kEngineKeys = {"path",  "max_tokens", "temperature",   "top_k",
                          "top_p", "stop",       "chat_template", "threads"};
const Keys kMockKeys = {"answers", "latency_s", "price_input", "price_output"};
constexpr const char* kOpenAiUrl = "https://api.openai.com/v1";
const std::vector<std::string> kRefineFields = {"problem", "answer", "feedback", "score"};

std::string join(const Keys& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i > 0 ? ", " : "") + std::string(keys[i]);
  return out;
}

// A YAML value as JSON: quoted scalars stay strings, plain ones become null, booleans or numbers
// when they read as such.
nlohmann::json to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    nlohmann::json j = nlohmann::json::object();
    for (auto it = n.begin(); it != n.end(); ++it) j[it->first.Scalar()] = to_json(it->second);
    return j;
  }
  if (n.IsSequence()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& item : n) j.push_back(to_json(item));
    return j;
  }
  if (!n.IsScalar()) return nullptr;
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  try {
    size_t used = 0;
    const long long i = std::stoll(s, &used);
    if (used == s.size()) return i;
  } catch (const std::exception&) {
  }
  try {
    size_t used = 0;
    const double d = std::stod(s, &used);
    if (used == s.size()) return d;
  } catch (const std::exception&) {
  }
  return s;
}

class Parser {
 public:
  explicit Parser(std::filesystem::path file) : file_(std::move(file)), name_(file_.string()) {}

  SearchTask parse(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      fail_line(e.mark.line >= 0 ? e.mark.line + 1 : 1, "invalid YAML: " + e.msg);
    }
    if (!root.IsMap()) fail(root, "a search task must be a YAML mapping (problem, models, ...)");
    SearchTask t;
    t.file = file_;
    t.refine = kDefaultRefineTemplate;
    t.scorer.working_dir = file_.parent_path();
    bool has_problem = false, has_models = false, has_scorer = false, has_budget = false;
    walk(root, kTopKeys, "the task", [&](const std::string& key, const YAML::Node& v) {
      if (key == "problem") {
        t.problem = text_value(v, key);
        has_problem = true;
      } else if (key == "system") {
        t.system = text_value(v, key);
      } else if (key == "refine") {
        t.refine = text_value(v, key);
        check_refine(t.refine, v);
      } else if (key == "models") {
        parse_models(v, t);
        has_models = true;
      } else if (key == "scorer") {
        parse_scorer(v, t.scorer);
        has_scorer = true;
      } else if (key == "budget") {
        parse_budget(v, t.budget);
        has_budget = true;
      } else if (key == "concurrency") {
        t.concurrency = static_cast<int>(integer(v, key, 1, 1024));
      } else if (key == "algorithm") {
        parse_algorithm(v, t);
      } else if (key == "seed") {
        t.seed = static_cast<uint64_t>(integer(v, key, 0, INT64_MAX));
      } else if (key == "best") {
        t.best = static_cast<int>(integer(v, key, 1, 1000));
      }
    });
    if (!has_problem || t.problem.empty()) fail(root, "'problem' (the prompt) is required");
    if (!has_models) fail(root, "'models' (a list of models, one action each) is required");
    if (!has_scorer) fail(root, "'scorer' (with 'command') is required");
    if (!has_budget || (t.budget.calls == 0 && t.budget.cost_usd == 0 && t.budget.wall_s == 0)) {
      fail(root, "'budget' needs at least one of calls, cost_usd, wall_s");
    }
    bool priced = false;
    for (const SearchModel& m : t.models) {
      const LlmPrices& p = m.backend == "http" ? m.http.prices : m.mock.prices;
      priced = priced ||
               (m.backend != "engine" && (p.input_per_million > 0 || p.output_per_million > 0));
    }
    if (t.budget.calls == 0 && t.budget.wall_s == 0 && !priced) {
      fail(root,
           "'budget' has only cost_usd, and no model has prices (price_input, price_output):"
           " the search would never stop; add calls or wall_s");
    }
    for (SearchModel& m : t.models) {
      m.http.seed = t.seed;
      if (m.backend == "http" && m.http.base_url.empty()) m.http.base_url = kOpenAiUrl;
    }
    check_algorithm(t);
    return t;
  }

 private:
  using Visit = std::function<void(const std::string&, const YAML::Node&)>;

  [[noreturn]] void fail_line(int line, const std::string& message) const {
    throw ConfigError(name_ + ":" + std::to_string(line) + ": " + message);
  }
  [[noreturn]] void fail(const YAML::Node& at, const std::string& message) const {
    fail_line(line_of(at), message);
  }
  static int line_of(const YAML::Node& n) {
    if (!n.IsDefined()) return 1;
    const YAML::Mark mark = n.Mark();
    return mark.line >= 0 ? mark.line + 1 : 1;
  }

  // Calls visit(key, value) for each entry of a mapping; unknown or repeated keys are errors.
  void walk(const YAML::Node& map, const Keys& allowed, const std::string& where,
            const Visit& visit) const {
    if (!map.IsMap()) fail(map, where + " must be a mapping");
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) fail(it->first, "a key in " + where + " must be a plain name");
      const std::string key = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        fail(it->first,
             "unknown key '" + key + "' in " + where + " (known: " + join(allowed) + ")");
      }
      if (!seen.insert(key).second) fail(it->first, "'" + key + "' is given twice");
      visit(key, it->second);
    }
  }

  std::string text_value(const YAML::Node& v, const std::string& key) const {
    if (!v.IsScalar()) fail(v, "'" + key + "' must be a text");
    return v.Scalar();
  }

  double number(const YAML::Node& v, const std::string& key, double lo, double hi) const {
    const nlohmann::json j = v.IsScalar() ? to_json(v) : nlohmann::json();
    if (!j.is_number() || !std::isfinite(j.get<double>()) || j.get<double>() < lo ||
        j.get<double>() > hi) {
      std::ostringstream range;
      range << "a number in [" << lo << ", " << hi << "]";
      fail(v, "'" + key + "' must be " + range.str());
    }
    return j.get<double>();
  }

  int64_t integer(const YAML::Node& v, const std::string& key, int64_t lo, int64_t hi) const {
    const nlohmann::json j = v.IsScalar() ? to_json(v) : nlohmann::json();
    if (!j.is_number_integer() || j.get<int64_t>() < lo || j.get<int64_t>() > hi) {
      fail(v, "'" + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
    return j.get<int64_t>();
  }

  bool boolean(const YAML::Node& v, const std::string& key) const {
    const nlohmann::json j = v.IsScalar() ? to_json(v) : nlohmann::json();
    if (!j.is_boolean()) fail(v, "'" + key + "' must be true or false");
    return j.get<bool>();
  }

  // A string or a list of strings.
  std::vector<std::string> strings(const YAML::Node& v, const std::string& key) const {
    if (v.IsScalar()) return {v.Scalar()};
    if (!v.IsSequence()) fail(v, "'" + key + "' must be a text or a list of texts");
    std::vector<std::string> out;
    for (const auto& item : v) {
      if (!item.IsScalar()) fail(item, "'" + key + "' must hold texts only");
      out.push_back(item.Scalar());
    }
    return out;
  }

  void check_refine(const std::string& text, const YAML::Node& at) const {
    std::string error;
    const auto tmpl = eval::Template::parse(text, &error);
    if (!tmpl) fail(at, "'refine': " + error + " (write {{ and }} for literal braces)");
    bool uses_parent = false;
    for (const std::string& f : tmpl->fields()) {
      if (std::find(kRefineFields.begin(), kRefineFields.end(), f) == kRefineFields.end()) {
        fail(at, "'refine' uses {" + f +
                     "}; the fields are {problem}, {answer}, {feedback}, {score} (write {{ and }} "
                     "for literal braces)");
      }
      uses_parent = uses_parent || f == "answer" || f == "feedback";
    }
    if (!uses_parent) fail(at, "'refine' must use {answer} or {feedback}: it refines an answer");
  }

  void parse_models(const YAML::Node& list, SearchTask& t) const {
    if (!list.IsSequence() || list.size() == 0) {
      fail(list, "'models' must be a non-empty list of mappings (name, backend, ...)");
    }
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node& m = list[i];
      const std::string where = "models[" + std::to_string(i) + "]";
      if (!m.IsMap()) fail(m, where + " must be a mapping (name, backend, ...)");
      const YAML::Node backend = m["backend"];
      if (!backend || !backend.IsScalar()) {
        fail(m, where + ": 'backend' (http, engine or mock) is required");
      }
      SearchModel model;
      model.backend = backend.Scalar();
      Keys allowed = kModelCommonKeys;
      const Keys* own = model.backend == "http"     ? &kHttpKeys
                        : model.backend == "engine" ? &kEngineKeys
                        : model.backend == "mock"   ? &kMockKeys
                                                    : nullptr;
      if (own == nullptr) {
        fail(backend, where + ": backend '" + model.backend + "' is not one of http, engine, mock");
      }
      allowed.insert(allowed.end(), own->begin(), own->end());
      walk(m, allowed, where + " (backend " + model.backend + ")",
           [&](const std::string& key, const YAML::Node& v) { model_key(model, key, v); });
      if (model.name.empty()) fail(m, where + ": 'name' is required");
      if (!names.insert(model.name).second) fail(m, "two models are named '" + model.name + "'");
      model.http.name = model.engine.name = model.mock.name = model.name;
      if (model.backend == "http" && model.http.model.empty()) {
        fail(m, where + ": 'model' (the server's model name) is required");
      }
      if (model.backend == "engine" && model.engine.model.empty()) {
        fail(m, where + ": 'path' (a model folder or .gguf) is required");
      }
      if (model.backend == "mock" && model.mock.answers.empty()) {
        fail(m, where + ": 'answers' (a non-empty list) is required");
      }
      t.models.push_back(std::move(model));
    }
  }

  void model_key(SearchModel& m, const std::string& key, const YAML::Node& v) const {
    HttpBackendOptions& h = m.http;
    EngineBackendOptions& e = m.engine;
    if (key == "name") {
      m.name = text_value(v, key);
    } else if (key == "backend") {
    } else if (m.backend == "http") {
      if (key == "base_url") h.base_url = text_value(v, key);
      if (key == "model") h.model = text_value(v, key);
      if (key == "api_key_env") h.api_key_env = text_value(v, key);
      if (key == "temperature") h.temperature = number(v, key, 0, 10);
      if (key == "top_p") h.top_p = number(v, key, 0, 1);
      if (key == "max_tokens") h.max_tokens = static_cast<int>(integer(v, key, 1, 10000000));
      if (key == "stop") h.stop = strings(v, key);
      if (key == "extra_body") {
        if (!v.IsMap()) fail(v, "'extra_body' must be a mapping (fields added to each request)");
        h.extra_body = to_json(v);
      }
      if (key == "timeout_s") h.timeout_s = number(v, key, 0.001, 86400);
      if (key == "connect_timeout_s") h.connect_timeout_s = number(v, key, 0.001, 3600);
      if (key == "max_retries") h.max_retries = static_cast<int>(integer(v, key, 0, 100));
      if (key == "backoff_s") h.backoff_initial_s = number(v, key, 0, 3600);
      if (key == "backoff_max_s") h.backoff_max_s = number(v, key, 0, 86400);
      if (key == "retry_after_max_s") h.retry_after_max_s = number(v, key, 0, 86400);
      if (key == "concurrency") h.concurrency = static_cast<int>(integer(v, key, 1, 1024));
      if (key == "price_input") h.prices.input_per_million = number(v, key, 0, 1e6);
      if (key == "price_output") h.prices.output_per_million = number(v, key, 0, 1e6);
    } else if (m.backend == "engine") {
      if (key == "path") e.model = resolve(text_value(v, key));
      if (key == "max_tokens") e.max_tokens = static_cast<int>(integer(v, key, 1, 1000000));
      if (key == "temperature") e.temperature = static_cast<float>(number(v, key, 0, 10));
      if (key == "top_k") e.top_k = static_cast<int>(integer(v, key, 0, 1000000));
      if (key == "top_p") e.top_p = static_cast<float>(number(v, key, 1e-6, 1));
      if (key == "stop") e.stop = strings(v, key);
      if (key == "chat_template") e.chat_template = boolean(v, key);
      if (key == "threads") e.threads = static_cast<int>(integer(v, key, 0, 4096));
    } else {
      if (key == "answers") m.mock.answers = strings(v, key);
      if (key == "latency_s") m.mock.latency_s = number(v, key, 0, 3600);
      if (key == "price_input") m.mock.prices.input_per_million = number(v, key, 0, 1e6);
      if (key == "price_output") m.mock.prices.output_per_million = number(v, key, 0, 1e6);
    }
  }

  std::filesystem::path resolve(const std::string& path) const {
    const std::filesystem::path p(path);
    return p.is_absolute() ? p : file_.parent_path() / p;
  }

  void parse_scorer(const YAML::Node& v, ScorerOptions& s) const {
    bool has_command = false;
    walk(v, kScorerKeys, "'scorer'", [&](const std::string& key, const YAML::Node& x) {
      if (key == "command") {
        // A string runs through the shell; a list is the program and its arguments.
        s.argv = x.IsScalar() ? shell_argv(x.Scalar()) : strings(x, key);
        if (s.argv.empty() || s.argv.back().empty()) fail(x, "'command' is empty");
        has_command = true;
      } else if (key == "timeout_s") {
        s.timeout_s = number(x, key, 0.001, 86400);
      } else if (key == "memory_mb") {
        s.memory_limit_bytes = static_cast<uint64_t>(integer(x, key, 1, 1 << 30)) << 20;
      } else if (key == "env") {
        if (!x.IsMap()) fail(x, "'env' must be a mapping NAME: value");
        for (auto it = x.begin(); it != x.end(); ++it) {
          if (!it->second.IsScalar()) fail(it->second, "'env' values must be texts");
          s.env.emplace_back(it->first.Scalar(), it->second.Scalar());
        }
      }
    });
    if (!has_command) fail(v, "'scorer' needs a 'command'");
  }

  void parse_budget(const YAML::Node& v, SearchBudget& b) const {
    walk(v, kBudgetKeys, "'budget'", [&](const std::string& key, const YAML::Node& x) {
      if (key == "calls") b.calls = integer(x, key, 0, INT64_MAX);
      if (key == "cost_usd") b.cost_usd = number(x, key, 0, 1e9);
      if (key == "wall_s") b.wall_s = number(x, key, 0, 1e9);
    });
  }

  // "algorithm: ab-mcts-a" or "algorithm: {name: ab-mcts-a, <parameters>}". The parameters are
  // checked by make_search, whose ConfigError gets the line added here.
  void parse_algorithm(const YAML::Node& v, SearchTask& t) const {
    if (v.IsScalar()) {
      t.algorithm = v.Scalar();
    } else if (v.IsMap()) {
      nlohmann::json j = to_json(v);
      if (!j.contains("name") || !j["name"].is_string()) {
        fail(v, "'algorithm' needs a 'name' (" + names() + ")");
      }
      t.algorithm = j["name"].get<std::string>();
      j.erase("name");
      t.algorithm_params = std::move(j);
    } else {
      fail(v, "'algorithm' must be a name or a mapping with 'name' and parameters");
    }
    algorithm_line_ = line_of(v);
  }

  // The algorithm and its parameters, checked by the search library with the real number of
  // actions (prior_means has one entry per model).
  void check_algorithm(const SearchTask& t) const {
    try {
      if (t.algorithm == "population") {  // docs/POPULATION.md
        parse_population_params(t.algorithm_params, file_.parent_path());
        return;
      }
      make_search({t.algorithm, t.algorithm_params, static_cast<int>(t.models.size()), t.seed});
    } catch (const ConfigError& e) {
      std::string what = e.what();
      if (what.rfind("search: unknown algorithm", 0) == 0 && what.back() == ')') {
        what.insert(what.size() - 1, ", or population");  // the other family (POPULATION.md)
      }
      fail_line(algorithm_line_, "'algorithm': " + what);
    }
  }

  static std::string names() {
    std::string out;
    for (const std::string& n : search_algorithms()) out += (out.empty() ? "" : ", ") + n;
    return out + ", population";
  }

  std::filesystem::path file_;
  std::string name_;
  mutable int algorithm_line_ = 1;
};

}  // namespace

SearchTask parse_search_task(const std::string& yaml, const std::filesystem::path& file) {
  return Parser(file).parse(yaml);
}

SearchTask load_search_task(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open search task " + file.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_search_task(text.str(), file);
}

std::vector<std::unique_ptr<LlmBackend>> make_search_backends(const SearchTask& task) {
  std::vector<std::unique_ptr<LlmBackend>> out;
  for (const SearchModel& m : task.models) {
    if (m.backend == "http") out.push_back(make_http_backend(m.http));
    if (m.backend == "engine") out.push_back(make_engine_backend(m.engine));
    if (m.backend == "mock") out.push_back(make_mock_backend(m.mock));
  }
  return out;
}

}  // namespace shoal
