// Evaluation results as JSON: one object with per-task metrics (NaN, e.g. a standard error over
// one sample, is written as null), and per-sample records as JSON lines.
#include "shoal/eval.h"

namespace shoal {

nlohmann::json to_json(const EvalResult& result) {
  nlohmann::json results = nlohmann::json::object();
  for (const TaskResult& t : result.tasks) {
    nlohmann::json j = {{"kind", task_kind_name(t.kind)},
                        {"samples", t.n_samples},
                        {"metric", t.metric},
                        {"score", t.score},
                        {"weight", t.weight}};
    for (const auto& [name, value] : t.metrics) j[name] = value;
    results[t.name] = std::move(j);
  }
  return {{"results", std::move(results)}, {"score", result.score}};
}

void write_samples_jsonl(std::ostream& out, const EvalResult& result) {
  for (const TaskResult& t : result.tasks) {
    for (const nlohmann::json& s : t.samples) {
      out << s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
  }
}

}  // namespace shoal
