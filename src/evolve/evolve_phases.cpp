// ps_then_dfs: Sakana's combination of the two spaces. A parameter-space search runs in OUT/ps;
// its best model (OUT/ps/best, the folder `shoal merge OUT/ps/best.yml` writes) then joins the
// data-flow pool in front of the source models, and a DFS search runs in OUT/dfs. Each phase is
// an ordinary run (checkpoint, log, report, outputs), so resuming either phase works as for a
// single run; OUT/summary.json joins the two summaries.
#include <cstdio>

#include "evolve/evolve_run.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json summary_json(const EvolveSummary& s) {
  json j = {{"stop_reason", s.stop_reason}, {"generations", s.generations},
            {"evaluations", s.evaluations}, {"evaluated", s.evaluated},
            {"failures", s.failures},       {"best_score", s.best_score}};
  if (s.test_score) j["test_score"] = *s.test_score;
  return j;
}

}  // namespace

EvolveConfig phase_config(const EvolveConfig& config, const std::string& phase,
                          const fs::path& run_dir) {
  EvolveConfig c = config;
  if (phase == "ps") {
    c.genome_kind = GenomeKind::kPs;
    return c;
  }
  SHOAL_ASSERT(phase == "dfs");
  c.genome_kind = GenomeKind::kDfs;
  // The PS result first: with no head_model it is the head (embeddings, final norm, lm_head),
  // and the DFS start point runs it unchanged.
  c.dfs.models.insert(c.dfs.models.begin(),
                      fs::absolute(run_dir / "ps" / "best").lexically_normal().string());
  c.x0.clear();  // optimizer.x0 belongs to the PS phase
  // The PS result is part of what the DFS phase is: a resumed PS phase that ends elsewhere
  // (a larger budget) makes the DFS phase's checkpoint stale.
  const json ps_summary = read_json_file(run_dir / "ps" / "summary.json");
  if (!ps_summary.contains("best") || !ps_summary["best"].contains("genome")) {
    throw FormatError((run_dir / "ps" / "summary.json").string() + ": no best genome");
  }
  c.phase_inputs = {{"ps_best", ps_summary["best"]["genome"]}};
  return c;
}

EvolveSummary run_ps_then_dfs(const EvolveConfig& config, const EvolveRunOptions& options) {
  const fs::path& out = options.out_dir;
  fs::create_directories(out);
  const auto phase_options = [&](const std::string& phase) {
    EvolveRunOptions o = options;
    o.out_dir = out / phase;
    std::error_code ec;
    o.resume = options.resume && fs::exists(o.out_dir / "checkpoint.json", ec);
    return o;
  };
  const EvolveRunOptions ps_options = phase_options("ps");
  if (!options.resume && fs::exists(ps_options.out_dir / "checkpoint.json")) {
    throw ConfigError(out.string() +
                      " already holds a run (ps/checkpoint.json); continue it "
                      "with --resume or choose another --out");
  }
  const EvolveConfig ps = phase_config(config, "ps", out);
  const EvolveSummary s1 =
      run_with_genome(ps, ps_options, make_run_genome(ps, options.n_threads), "ps");
  if (s1.interrupted) return s1;

  const EvolveConfig dfs = phase_config(config, "dfs", out);
  EvolveRunOptions dfs_options = phase_options("dfs");
  if (dfs_options.resume) {
    const json saved = read_json_file(dfs_options.out_dir / "checkpoint.json");
    if (saved.value("config", json()).value("phase_inputs", json()) != dfs.phase_inputs) {
      // The PS phase went on and found another model: the DFS phase starts again on it, as an
      // uninterrupted run with this budget would have.
      if (options.log_mode != LogMode::kQuiet) {
        std::fprintf(stderr, "evolve: the PS result changed; the DFS phase starts again\n");
      }
      fs::remove_all(dfs_options.out_dir);
      dfs_options.resume = false;
    }
  }
  const EvolveSummary s2 =
      run_with_genome(dfs, dfs_options, make_run_genome(dfs, options.n_threads), "dfs");
  if (s2.interrupted) return s2;
  const json joined = {{"ps", summary_json(s1)},
                       {"dfs", summary_json(s2)},
                       {"best_model", (out / "dfs" / "best").string()}};
  write_json_atomic(out / "summary.json", joined);
  EvolveSummary s = s2;
  s.generations += s1.generations;
  s.evaluations += s1.evaluations;
  s.evaluated += s1.evaluated;
  s.failures += s1.failures;
  s.seconds += s1.seconds;
  return s;
}

}  // namespace shoal::evolve
