// MAP-Elites archive for quality-diversity runs (Mouret & Clune 2015; cells from binned per-task
// scores as in Sakana's CycleQD): each cell of a grid over behaviour descriptors keeps the best
// candidate that landed in it, so a run returns a set of good, different models. See
// docs/EVOLVE.md. Implemented in src/evolve/archive.cpp. Not thread-safe.
//
// Convention (as for the optimisers): fitness is MINIMISED; lower is better. Pass -score to keep
// the highest score.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal {

// One descriptor axis: [lower, upper] cut into `bins` equal bins. A value below lower lands in
// the first bin, above upper in the last (upper itself belongs to the last bin).
struct ArchiveAxis {
  std::string name;  // e.g. the task whose score it is
  double lower = 0;
  double upper = 1;
  int bins = 10;
};

struct Elite {
  std::vector<int> cell;            // bin index per axis
  std::vector<double> genome;       // the candidate
  double fitness = 0;               // lower is better
  std::vector<double> descriptors;  // as inserted, one per axis
  nlohmann::json info;              // caller's extras (scores, evaluation number, ...)
};

enum class Insertion {
  kNewCell,   // the cell was empty
  kImproved,  // strictly better than the cell's elite, which it replaced
  kRejected,  // not better (a tie keeps the incumbent), or a non-finite fitness
};

class MapElitesArchive {
 public:
  // Throws ConfigError for no axes, an empty or unnamed axis, lower >= upper, bins < 1, or more
  // than 2^24 cells in all.
  explicit MapElitesArchive(std::vector<ArchiveAxis> axes);

  // Bins the descriptors and keeps the candidate if its cell is empty or it is strictly better.
  // Throws ConfigError for a descriptor count that differs from the axes, a NaN descriptor or a
  // NaN fitness; +inf (a failed candidate) is rejected without error.
  Insertion insert(std::vector<double> genome, double fitness, std::vector<double> descriptors,
                   nlohmann::json info = nullptr);

  std::vector<int> cell_of(const std::vector<double>& descriptors) const;
  // The elite of a cell, or nullptr when it is empty.
  const Elite* at(const std::vector<int>& cell) const;
  // Every elite, best first (ties: lower cell index first).
  std::vector<Elite> elites() const;
  const std::vector<ArchiveAxis>& axes() const { return axes_; }
  size_t size() const { return elites_.size(); }  // filled cells
  size_t n_cells() const { return elite_of_cell_.size(); }
  double coverage() const { return double(size()) / double(n_cells()); }

  // {"format": "shoal-map-elites", "version": 1, "axes": [...], "elites": [...]}; doubles are
  // kept exactly (non-finite ones as strings).
  nlohmann::json to_json() const;
  // Throws FormatError naming the key for a corrupt or foreign archive (also an elite in the
  // wrong cell for its descriptors, or two elites in one cell).
  static MapElitesArchive from_json(const nlohmann::json& j);
  // Atomic: written to "<path>.tmp" and renamed.
  void save(const std::filesystem::path& path) const;
  static MapElitesArchive load(const std::filesystem::path& path);

 private:
  size_t flat_index(const std::vector<int>& cell) const;

  std::vector<ArchiveAxis> axes_;
  std::vector<int> elite_of_cell_;  // index into elites_, -1 when empty
  std::vector<Elite> elites_;       // in the order their cells were first filled
};

}  // namespace shoal
