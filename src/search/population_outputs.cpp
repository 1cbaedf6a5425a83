// Database meta, the rebuild on --resume, and best/; see population_run.h.
#include <algorithm>

#include "search/population_run.h"
#include "search/search_run_output.h"
#include "shoal/error.h"

namespace shoal::search {

using nlohmann::json;

json population_meta(const SearchTask& task, const PopulationParams& params) {
  json models = json::array();
  for (const SearchModel& m : task.models) models.push_back(m.name);
  return {{"algorithm", "population"},
          {"params", params.to_json()},
          {"models", models},
          {"seed", task.seed},
          {"problem", task.problem}};
}

void check_meta(const json& stored, const json& now, const std::filesystem::path& db_path) {
  const auto differs = [&](const char* key) { return stored.value(key, json()) != now.at(key); };
  const std::string where = db_path.string() + " belongs to another search: ";
  if (differs("algorithm")) throw ConfigError(where + "its algorithm is not population");
  if (differs("models")) {
    throw ConfigError(where + "its models are " + stored.value("models", json()).dump() +
                      ", the task's " + now.at("models").dump() + " (names and order must match)");
  }
  if (differs("seed")) {
    throw ConfigError(where + "its seed is " + stored.value("seed", json()).dump() +
                      ", the task's " + now.at("seed").dump());
  }
  json a = stored.value("params", json::object());
  json b = now.at("params");
  // Prompts and the evaluation budget may change between runs, like the task's budgets.
  for (const char* key : {"templates", "max_evaluations"}) {
    a.erase(key);
    b.erase(key);
  }
  if (a != b) {
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (a.value(it.key(), json()) != it.value()) {
        throw ConfigError(where + "algorithm parameter '" + it.key() + "' was " +
                          a.value(it.key(), json()).dump() + ", the task has " + it.value().dump());
      }
    }
    throw ConfigError(where + "its algorithm parameters differ from the task's");
  }
}

PopulationState rebuild_state(const ProgramDb& db, const PopulationParams& params,
                              const std::vector<std::string>& models) {
  PopulationState state(params, models.size());
  for (Program& p : db.load_programs()) state.add(std::move(p));
  for (const ProposalRow& r : db.load_proposals()) {
    const auto it = std::find(models.begin(), models.end(), r.model);
    if (it == models.end()) {
      throw FormatError("population database: proposal " + std::to_string(r.id) +
                        " names an unknown model '" + r.model + "'");
    }
    state.record(static_cast<size_t>(it - models.begin()), r.reward, r.cost_usd);
  }
  return state;
}

void write_population_best(const std::filesystem::path& out_dir, const PopulationState& state,
                           int k) {
  const std::filesystem::path dir = out_dir / "best";
  std::filesystem::create_directories(dir);
  const std::string ext = std::filesystem::path(state.params().file_name).extension().string();
  json list = json::array();
  const std::vector<int64_t>& archive = state.archive();
  for (size_t i = 0; i < archive.size() && static_cast<int>(i) < k; ++i) {
    const Program& p = state.program(archive[i]);
    const std::string file = std::to_string(i + 1) + (ext.empty() ? ".txt" : ext);
    write_file_atomic(dir / file, p.code);
    list.push_back({{"rank", i + 1},
                    {"file", file},
                    {"program", p.id},
                    {"island", p.island},
                    {"op", p.op},
                    {"model", p.model},
                    {"score", p.score},
                    {"metrics", p.metrics},
                    {"feedback", p.feedback}});
  }
  write_file_atomic(dir / "best.json", list.dump(2) + "\n");
}

}  // namespace shoal::search
