// Pieces of the population run shared by its files (internal to the search layer): the database
// meta of a task, rebuilding the population from the database, and the best/ folder.
// Implemented in population_outputs.cpp; the loop itself is population_run.cpp.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "search/population_state.h"
#include "search/program_db.h"
#include "shoal/population.h"
#include "shoal/search_run.h"

namespace shoal::search {

// {"algorithm": "population", "params", "models": [names], "seed", "problem"}.
nlohmann::json population_meta(const SearchTask& task, const PopulationParams& params);

// ConfigError when a database belongs to another task: other models (names, order), seed or
// parameters (templates may change).
void check_meta(const nlohmann::json& stored, const nlohmann::json& now,
                const std::filesystem::path& db_path);

// Replays every program and proposal of the database into a fresh state: grids, archive,
// children counts and bandit statistics come out as they were when the rows were written.
PopulationState rebuild_state(const ProgramDb& db, const PopulationParams& params,
                              const std::vector<std::string>& models);

// best/1<ext> ... best/K<ext> (the archive's best, best first) and best/best.json.
void write_population_best(const std::filesystem::path& out_dir, const PopulationState& state,
                           int k);

}  // namespace shoal::search
