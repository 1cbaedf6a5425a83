// Islands, MAP-Elites grids, the archive, selection, migration and the model bandit; see
// population_state.h.
#include "search/population_state.h"

#include <algorithm>
#include <cmath>

#include "search/population_novelty.h"
#include "shoal/error.h"

namespace shoal::search {
namespace {

// A descriptor's value: a built-in or a numeric metric.
bool descriptor_value(const Program& p, const std::string& metric, double& out) {
  if (metric == "code_length") {
    out = static_cast<double>(p.code.size());
    return true;
  }
  if (metric == "code_lines") {
    out = static_cast<double>(std::count(p.code.begin(), p.code.end(), '\n'));
    return true;
  }
  const auto it = p.metrics.find(metric);
  if (it == p.metrics.end() || !it->is_number()) return false;
  out = it->get<double>();
  return std::isfinite(out);
}

// Better = higher score; ties go to the earlier program.
bool better(const Program& a, const Program& b) {
  if (a.correct != b.correct) return a.correct;
  if (a.score != b.score) return a.score > b.score;
  return a.id < b.id;
}

}  // namespace

double improvement_reward(double parent, bool child_correct, double child) {
  if (!child_correct) return 0;
  const double scale = std::max(std::fabs(parent), 1e-9);
  return std::clamp((child - parent) / scale, 0.0, 1.0);
}

PopulationState::PopulationState(PopulationParams params, size_t n_models)
    : params_(std::move(params)),
      grids_(static_cast<size_t>(params_.islands)),
      members_(static_cast<size_t>(params_.islands)),
      codes_(static_cast<size_t>(params_.islands)),
      stats_(n_models) {}

int64_t PopulationState::cell_of(const Program& p) const {
  int64_t cell = 0;
  for (const PopulationDescriptor& d : params_.grid) {
    double v = 0;
    if (!descriptor_value(p, d.metric, v)) return -1;
    const double x = (v - d.min) / (d.max - d.min) * d.bins;
    const int64_t bin = std::clamp<int64_t>(static_cast<int64_t>(std::floor(x)), 0, d.bins - 1);
    cell = cell * d.bins + bin;
  }
  return cell;
}

InsertOutcome PopulationState::add(Program p) {
  SHOAL_ASSERT(p.id == static_cast<int64_t>(programs_.size()) + 1);
  SHOAL_ASSERT(p.island >= 0 && p.island < params_.islands);
  InsertOutcome out;
  const size_t island = static_cast<size_t>(p.island);
  if (p.parent > 0) programs_.at(static_cast<size_t>(p.parent - 1)).children += 1;
  if (p.parent2 > 0) programs_.at(static_cast<size_t>(p.parent2 - 1)).children += 1;
  if (params_.novelty.enabled) p.signature = signature(p.code);
  p.cell = p.correct ? cell_of(p) : -1;
  codes_[island].insert(p.code);
  members_[island].push_back(p.id);
  const int64_t id = p.id;
  const int64_t cell = p.cell;
  programs_.push_back(std::move(p));
  out.cell = cell;
  if (cell >= 0) {
    auto [it, fresh] = grids_[island].try_emplace(cell, id);
    if (fresh) {
      out.placed = true;
    } else if (program(id).score > program(it->second).score) {
      out.displaced = it->second;
      it->second = id;
      out.placed = true;
    }
  }
  update_archive(id);
  return out;
}

void PopulationState::update_archive(int64_t id) {
  const Program& p = program(id);
  if (!p.correct) return;
  // One entry per code: a migrated copy does not take a second place.
  for (int64_t a : archive_) {
    if (program(a).code == p.code) return;
  }
  const auto pos = std::find_if(archive_.begin(), archive_.end(),
                                [&](int64_t a) { return better(p, program(a)); });
  archive_.insert(pos, id);
  if (archive_.size() > static_cast<size_t>(params_.archive_size)) archive_.pop_back();
}

std::vector<int64_t> PopulationState::elites(int island) const {
  std::vector<int64_t> out;
  for (const auto& [cell, id] : grids_.at(static_cast<size_t>(island))) out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}

int64_t PopulationState::elite_at(int island, int64_t cell) const {
  const auto& g = grids_.at(static_cast<size_t>(island));
  const auto it = g.find(cell);
  return it == g.end() ? -1 : it->second;
}

int64_t PopulationState::best() const {
  int64_t best = -1;
  for (const Program& p : programs_) {
    if (best < 0 || better(p, program(best))) best = p.id;
  }
  return best;
}

std::vector<double> PopulationState::selection_weights(const std::vector<int64_t>& ids) const {
  std::vector<double> scores;
  for (int64_t id : ids) scores.push_back(program(id).score);
  std::vector<double> sorted = scores;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n == 0 ? 0 : (sorted[(n - 1) / 2] + sorted[n / 2]) / 2;
  // Scale: the median absolute deviation (robust to one outlier), else the range, else 1.
  std::vector<double> dev;
  for (double s : scores) dev.push_back(std::fabs(s - median));
  std::sort(dev.begin(), dev.end());
  double scale = n == 0 ? 0 : (dev[(n - 1) / 2] + dev[n / 2]) / 2 * 1.4826;
  if (!(scale > 0) && n > 0) scale = sorted.back() - sorted.front();
  if (!(scale > 0)) scale = 1;
  std::vector<double> w;
  for (size_t i = 0; i < ids.size(); ++i) {
    const double z = params_.selection_beta * (scores[i] - median) / scale;
    const double fitness = 1 / (1 + std::exp(-std::clamp(z, -50.0, 50.0)));
    w.push_back(fitness / (1 + params_.child_penalty * program(ids[i]).children));
  }
  return w;
}

namespace {
int64_t weighted_pick(const std::vector<int64_t>& ids, const std::vector<double>& w, double u) {
  if (ids.empty()) return -1;
  double total = 0;
  for (double x : w) total += x;
  double target = u * total;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (target < w[i]) return ids[i];
    target -= w[i];
  }
  return ids.back();
}
}  // namespace

int64_t PopulationState::select_parent(int island, double draw) const {
  const std::vector<int64_t> ids = elites(island);
  return weighted_pick(ids, selection_weights(ids), draw);
}

int64_t PopulationState::fix_parent(int island) const {
  int64_t best = -1;
  for (int64_t id : members_.at(static_cast<size_t>(island))) {
    if (best < 0 || program(id).score >= program(best).score) best = id;
  }
  return best;
}

int64_t PopulationState::select_partner(int island, int64_t first, const CounterRng& rng,
                                        uint64_t& counter) const {
  std::vector<int> others;
  for (int i = 0; i < params_.islands; ++i) {
    if (i != island && !grids_[static_cast<size_t>(i)].empty()) others.push_back(i);
  }
  const double u = rng.uniform(counter++);
  const double v = rng.uniform(counter++);
  const double w = rng.uniform(counter++);
  std::vector<int64_t> ids;
  if (!others.empty() && u < params_.cross_island) {
    const int other = others[std::min(others.size() - 1, static_cast<size_t>(v * others.size()))];
    ids = elites(other);
  } else {
    for (int64_t id : elites(island)) {
      if (id != first && program(id).cell != program(first).cell) ids.push_back(id);
    }
    if (ids.empty() && !others.empty()) {
      ids = elites(others[std::min(others.size() - 1, static_cast<size_t>(v * others.size()))]);
    }
  }
  std::erase_if(ids, [&](int64_t id) { return program(id).code == program(first).code; });
  return weighted_pick(ids, selection_weights(ids), w);
}

std::vector<int64_t> PopulationState::inspirations(int island, const std::vector<int64_t>& exclude,
                                                   int k, const CounterRng& rng,
                                                   uint64_t& counter) const {
  std::vector<int64_t> out;
  std::unordered_set<std::string> seen;
  for (int64_t id : exclude) seen.insert(program(id).code);
  const auto take = [&](int64_t id) {
    if (static_cast<int>(out.size()) >= k || !seen.insert(program(id).code).second) return;
    out.push_back(id);
  };
  const int from_archive = (k + 1) / 2;
  for (int64_t id : archive_) {
    if (static_cast<int>(out.size()) >= from_archive) break;
    take(id);
  }
  std::vector<int64_t> pool = elites(island);
  // A partial Fisher-Yates shuffle with the proposal's random numbers: diverse cells, not the top.
  for (size_t i = 0; i < pool.size() && static_cast<int>(out.size()) < k; ++i) {
    const size_t j = i + std::min(pool.size() - i - 1,
                                  static_cast<size_t>(rng.uniform(counter++) * (pool.size() - i)));
    std::swap(pool[i], pool[j]);
    take(pool[i]);
  }
  for (int64_t id : archive_) take(id);
  return out;
}

std::vector<uint64_t> PopulationState::signature(const std::string& code) const {
  return minhash(code, params_.novelty.shingle, params_.novelty.hashes);
}

std::pair<double, int64_t> PopulationState::most_similar(int island,
                                                         const std::vector<uint64_t>& sig) const {
  std::pair<double, int64_t> best{0.0, -1};
  for (int64_t id : members_.at(static_cast<size_t>(island))) {
    const double s = minhash_similarity(sig, program(id).signature);
    if (s > best.first || best.second < 0) best = {s, id};
  }
  return best;
}

bool PopulationState::island_has_code(int island, const std::string& code) const {
  return codes_.at(static_cast<size_t>(island)).count(code) > 0;
}

std::vector<std::pair<int64_t, int>> PopulationState::migrations() const {
  std::vector<std::pair<int64_t, int>> out;
  if (params_.islands < 2) return out;
  for (int i = 0; i < params_.islands; ++i) {
    std::vector<int64_t> ids = elites(i);
    if (ids.empty()) continue;
    std::sort(ids.begin(), ids.end(),
              [&](int64_t a, int64_t b) { return better(program(a), program(b)); });
    const size_t n = std::max<size_t>(
        1, static_cast<size_t>(std::ceil(params_.migration_fraction * ids.size() - 1e-9)));
    const int target = (i + 1) % params_.islands;
    for (size_t k = 0; k < std::min(n, ids.size()); ++k) {
      if (!island_has_code(target, program(ids[k]).code)) out.emplace_back(ids[k], target);
    }
  }
  return out;
}

void PopulationState::record(size_t model, double reward, double cost) {
  ModelStats& s = stats_.at(model);
  s.n += 1;
  s.reward += reward;
  s.cost += cost;
}

size_t PopulationState::choose_model(const std::vector<int>& in_flight) const {
  if (stats_.size() <= 1) return 0;
  double total = 0, max_cost = 0;
  for (size_t m = 0; m < stats_.size(); ++m) {
    const double n = static_cast<double>(stats_[m].n + in_flight.at(m));
    if (n == 0) return m;  // every model is tried once first, in order
    total += n;
    if (stats_[m].n > 0) max_cost = std::max(max_cost, stats_[m].cost / stats_[m].n);
  }
  size_t best = 0;
  double best_value = -1e300;
  for (size_t m = 0; m < stats_.size(); ++m) {
    const double n = static_cast<double>(stats_[m].n + in_flight[m]);
    double value =
        stats_[m].reward / n + params_.bandit_exploration * std::sqrt(std::log(total) / n);
    if (max_cost > 0 && stats_[m].n > 0) {
      value -= params_.bandit_cost_weight * (stats_[m].cost / stats_[m].n) / max_cost;
    }
    if (value > best_value) {
      best_value = value;
      best = m;
    }
  }
  return best;
}

}  // namespace shoal::search
