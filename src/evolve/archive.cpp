#include "shoal/archive.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>

#include "evolve/optimizer_impl.h"
#include "shoal/error.h"

namespace shoal {

using nlohmann::json;

namespace {

constexpr size_t kMaxCells = size_t{1} << 24;

[[noreturn]] void corrupt(const std::string& what) {
  throw FormatError("MAP-Elites archive: " + what);
}

}  // namespace

MapElitesArchive::MapElitesArchive(std::vector<ArchiveAxis> axes) : axes_(std::move(axes)) {
  if (axes_.empty()) throw ConfigError("MAP-Elites archive: at least one axis is needed");
  size_t cells = 1;
  for (const auto& a : axes_) {
    const std::string where = "MAP-Elites axis '" + a.name + "': ";
    if (a.name.empty()) throw ConfigError("MAP-Elites archive: an axis has no name");
    if (!(std::isfinite(a.lower) && std::isfinite(a.upper) && a.lower < a.upper)) {
      throw ConfigError(where + "needs finite lower < upper");
    }
    if (a.bins < 1) throw ConfigError(where + "bins must be at least 1");
    cells *= static_cast<size_t>(a.bins);
    if (cells > kMaxCells) throw ConfigError("MAP-Elites archive: more than 2^24 cells");
  }
  elite_of_cell_.assign(cells, -1);
}

std::vector<int> MapElitesArchive::cell_of(const std::vector<double>& d) const {
  if (d.size() != axes_.size()) {
    throw ConfigError("MAP-Elites archive: " + std::to_string(d.size()) + " descriptors for " +
                      std::to_string(axes_.size()) + " axes");
  }
  std::vector<int> cell(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    const ArchiveAxis& a = axes_[i];
    if (std::isnan(d[i])) {
      throw ConfigError("MAP-Elites archive: descriptor '" + a.name + "' is NaN");
    }
    const double t = (d[i] - a.lower) / (a.upper - a.lower) * a.bins;
    cell[i] = t <= 0 ? 0 : (t >= a.bins ? a.bins - 1 : static_cast<int>(std::floor(t)));
  }
  return cell;
}

size_t MapElitesArchive::flat_index(const std::vector<int>& cell) const {
  SHOAL_ASSERT(cell.size() == axes_.size());
  size_t index = 0;
  for (size_t i = 0; i < cell.size(); ++i) {
    SHOAL_ASSERT(cell[i] >= 0 && cell[i] < axes_[i].bins);
    index = index * static_cast<size_t>(axes_[i].bins) + static_cast<size_t>(cell[i]);
  }
  return index;
}

Insertion MapElitesArchive::insert(std::vector<double> genome, double fitness,
                                   std::vector<double> descriptors, json info) {
  if (std::isnan(fitness)) throw ConfigError("MAP-Elites archive: fitness is NaN");
  std::vector<int> cell = cell_of(descriptors);
  if (!std::isfinite(fitness)) return Insertion::kRejected;
  const size_t index = flat_index(cell);
  Elite elite{std::move(cell), std::move(genome), fitness, std::move(descriptors), std::move(info)};
  const int slot = elite_of_cell_[index];
  if (slot < 0) {
    elite_of_cell_[index] = static_cast<int>(elites_.size());
    elites_.push_back(std::move(elite));
    return Insertion::kNewCell;
  }
  if (fitness < elites_[slot].fitness) {
    elites_[slot] = std::move(elite);
    return Insertion::kImproved;
  }
  return Insertion::kRejected;
}

const Elite* MapElitesArchive::at(const std::vector<int>& cell) const {
  if (cell.size() != axes_.size()) return nullptr;
  for (size_t i = 0; i < cell.size(); ++i) {
    if (cell[i] < 0 || cell[i] >= axes_[i].bins) return nullptr;
  }
  const int slot = elite_of_cell_[flat_index(cell)];
  return slot < 0 ? nullptr : &elites_[slot];
}

std::vector<Elite> MapElitesArchive::elites() const {
  std::vector<Elite> out = elites_;
  std::sort(out.begin(), out.end(), [&](const Elite& a, const Elite& b) {
    if (a.fitness != b.fitness) return a.fitness < b.fitness;
    return flat_index(a.cell) < flat_index(b.cell);
  });
  return out;
}

json MapElitesArchive::to_json() const {
  json axes = json::array();
  for (const auto& a : axes_) {
    axes.push_back({{"name", a.name},
                    {"lower", evolve::to_json(a.lower)},
                    {"upper", evolve::to_json(a.upper)},
                    {"bins", a.bins}});
  }
  json elites = json::array();
  for (const auto& e : elites_) {
    elites.push_back({{"cell", e.cell},
                      {"genome", evolve::to_json(e.genome)},
                      {"fitness", evolve::to_json(e.fitness)},
                      {"descriptors", evolve::to_json(e.descriptors)},
                      {"info", e.info}});
  }
  return {{"format", "shoal-map-elites"}, {"version", 1}, {"axes", axes}, {"elites", elites}};
}

MapElitesArchive MapElitesArchive::from_json(const json& j) {
  if (!j.is_object() || j.value("format", json()) != "shoal-map-elites") {
    corrupt("not a shoal MAP-Elites archive (\"format\" is missing)");
  }
  if (j.value("version", json()) != 1) corrupt("unsupported version");
  for (const auto& [key, value] : j.items()) {
    if (key != "format" && key != "version" && key != "axes" && key != "elites") {
      corrupt("unknown key '" + key + "'");
    }
  }
  std::vector<ArchiveAxis> axes;
  try {
    const json& ja = evolve::member(j, "axes");
    if (!ja.is_array()) corrupt("'axes' must be an array");
    for (const auto& a : ja) {
      if (!evolve::member(a, "name").is_string()) corrupt("axis 'name' must be a string");
      axes.push_back({a["name"].get<std::string>(), evolve::read_double(a, "lower"),
                      evolve::read_double(a, "upper"),
                      static_cast<int>(evolve::read_int(a, "bins"))});
    }
  } catch (const FormatError& e) {
    corrupt(std::string("axes: ") + e.what());
  }
  std::optional<MapElitesArchive> archive;
  try {
    archive.emplace(std::move(axes));
  } catch (const ConfigError& e) {
    corrupt(e.what());
  }
  const json& je = evolve::member(j, "elites");
  if (!je.is_array()) corrupt("'elites' must be an array");
  for (size_t k = 0; k < je.size(); ++k) {
    const json& e = je[k];
    const std::string where = "elite " + std::to_string(k) + ": ";
    try {
      const size_t n_genome = evolve::member(e, "genome").is_array() ? e["genome"].size() : 0;
      std::vector<double> genome = evolve::read_vector(e, "genome", n_genome);
      const double fitness = evolve::read_double(e, "fitness");
      std::vector<double> d = evolve::read_vector(e, "descriptors", archive->axes_.size());
      const json& cell = evolve::member(e, "cell");
      if (!std::isfinite(fitness)) corrupt(where + "fitness must be finite");
      if (cell != json(archive->cell_of(d))) corrupt(where + "cell does not match descriptors");
      const Insertion r = archive->insert(std::move(genome), fitness, std::move(d),
                                          e.contains("info") ? e["info"] : json());
      if (r != Insertion::kNewCell) corrupt(where + "two elites in one cell");
    } catch (const ConfigError& err) {
      corrupt(where + err.what());
    } catch (const FormatError& err) {
      const std::string msg = err.what();
      if (msg.starts_with("MAP-Elites")) throw;
      corrupt(where + msg);
    }
  }
  return std::move(*archive);
}

void MapElitesArchive::save(const std::filesystem::path& path) const {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << to_json().dump() << '\n';
    out.flush();
    if (!out) throw IoError(errno_message("cannot write " + tmp.string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

MapElitesArchive MapElitesArchive::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + path.string()));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError(path.string() + ": not valid JSON (" + e.what() + ")");
  }
  try {
    return from_json(j);
  } catch (const FormatError& e) {
    throw FormatError(path.string() + ": " + e.what());
  }
}

}  // namespace shoal
