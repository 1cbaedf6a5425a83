// The state of a `shoal evolve` run, everything a resume needs: the optimiser (whose seed and
// counters are the random state), the archive, every evaluated genome with its metrics (the
// fitness cache), the order in which candidates were told, the elapsed time and the length of the
// log that goes with it. Saved as checkpoint.json after every generation, atomically.
// Implemented in src/evolve/evolve_checkpoint.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/archive.h"
#include "shoal/evolve.h"
#include "shoal/optimizer.h"

namespace shoal::evolve {

struct CacheEntry {
  std::vector<double> genome;
  CandidateMetrics metrics;  // `seconds` is not saved
};

struct RunState {
  std::unique_ptr<Optimizer> optimizer;
  std::optional<MapElitesArchive> archive;
  std::vector<CacheEntry> cache;                      // in the order of first evaluation
  std::map<std::vector<double>, size_t> cache_index;  // exact genome -> index into cache
  std::vector<size_t> history;                        // cache index of every candidate told
  std::vector<size_t> generation_ends;                // history.size() after each generation
  double elapsed_s = 0;                               // over all sessions
  uint64_t log_bytes = 0;                             // log.jsonl's length at this state
  std::string phase;                                  // "", or "ps" / "dfs" of ps_then_dfs

  // The first candidate with the highest score among those that succeeded (cache index).
  std::optional<size_t> best() const;
  int64_t failures() const;  // failed candidates told
  // Adds a genome's metrics to the cache (or finds it) and returns its index.
  size_t remember(const std::vector<double>& genome, const CandidateMetrics& metrics);
};

// {"format": "shoal-evolve-run", "version": 1, "config": identity, "config_dir", ...}.
nlohmann::json state_to_json(const RunState& state, const EvolveConfig& config);
// Throws FormatError("<file>: ...") for a corrupt or foreign checkpoint, ConfigError when it was
// written with another config (the budget aside) or a genome of another size.
RunState state_from_json(const nlohmann::json& j, const EvolveConfig& config, size_t dimension,
                         const std::filesystem::path& file);

// Written to "<path>.tmp", flushed and renamed.
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j);
// Throws IoError when unreadable, FormatError("<file>: not valid JSON (...)").
nlohmann::json read_json_file(const std::filesystem::path& path);

nlohmann::json metrics_to_json(const CandidateMetrics& m);

}  // namespace shoal::evolve
