// report.html: one self-contained page (inline SVG, no script) with the run's settings, the best
// candidate's scores on the search and test splits, fitness over evaluations, per-task scores of
// the best-so-far candidate, the best genome's parameters per layer, the archive, and failures.
// Nothing time-dependent is written, so a resumed run's report equals an uninterrupted one's.
#include <cmath>
#include <cstdio>
#include <set>

#include "evolve/evolve_run.h"
#include "evolve/evolve_svg.h"

namespace shoal::evolve {
namespace {

std::string num(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string row(std::initializer_list<std::string> cells, const char* tag = "td") {
  std::string o = "<tr>";
  for (const auto& c : cells) o += std::string("<") + tag + ">" + c + "</" + tag + ">";
  return o + "</tr>\n";
}

std::string optimizer_text(const Optimizer& opt) {
  const OptimizerOptions& o = opt.options();
  std::string s = std::string(optimizer_kind_name(o.kind)) + ", population " +
                  std::to_string(o.population) + ", sigma0 " + num(o.sigma0) + ", seed " +
                  std::to_string(o.seed);
  if (o.max_restarts > 0) s += ", IPOP up to " + std::to_string(o.max_restarts) + " restarts";
  return s;
}

}  // namespace

std::string render_report(const RunContext& ctx, const std::string& stop_reason,
                          const std::optional<FinalScores>& final_scores) {
  const EvolveConfig& config = ctx.config;
  const RunState& state = ctx.state;
  const Optimizer& opt = *state.optimizer;
  const auto best = state.best();

  std::string h =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>shoal evolve report</title>\n"
      "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;"
      "padding:3px 8px;text-align:left;font-size:13px}th{background:#f0f0f0}"
      "code{background:#f4f4f4;padding:1px 3px}</style></head><body>\n";
  h += "<h1>shoal evolve</h1>\n<table>\n";
  h += row({"config", "<code>" + html_escape(config.file.filename().string()) + "</code>"});
  const bool ps = config.genome_kind == GenomeKind::kPs;
  std::string genome = std::string(genome_kind_name(config.genome_kind)) + ": " +
                       (ps ? html_escape(config.ps.merge_method) + ", " : std::string()) +
                       std::to_string(ctx.genome->size()) + " genes (" +
                       html_escape(ctx.genome->layout()) + ")";
  if (ps && config.ps.smooth) genome += ", smooth";
  h += row({"genome", genome});
  h += row({"optimizer", html_escape(optimizer_text(opt))});
  h += row({"fitness",
            config.fitness.command.empty()
                ? "shoal eval tasks, split <code>" + html_escape(config.fitness.split) + "</code>"
                : "command <code>" + html_escape(config.fitness.command) + "</code>"});
  h += row({"stopped by", html_escape(stop_reason)});
  h += row({"generations", std::to_string(opt.generation())});
  h += row({"candidates", std::to_string(opt.evaluations()) + " told, " +
                              std::to_string(state.cache.size()) + " evaluated (the rest from " +
                              "the cache), " + std::to_string(state.failures()) + " failed"});
  h += "</table>\n";

  // Scores of the best candidate, per task, on both splits.
  if (best && final_scores) {
    const CandidateMetrics& s = final_scores->search;
    const auto& t = final_scores->test;
    const std::string test_name = config.fitness.test_split.value_or("test");
    h += "<h2>Best candidate</h2>\n<table>\n";
    h += row({"", html_escape(config.fitness.split) + " (searched)",
              html_escape(test_name) + " (never seen by the search)"},
             "th");
    std::set<std::string> tasks;
    for (const auto& [k, v] : s.task_scores) tasks.insert(k);
    if (t) {
      for (const auto& [k, v] : t->task_scores) tasks.insert(k);
    }
    for (const auto& k : tasks) {
      const auto a = s.task_scores.find(k);
      std::string b = "-";
      if (t && t->ok && t->task_scores.count(k)) b = num(t->task_scores.at(k));
      h += row({html_escape(k), a == s.task_scores.end() ? "-" : num(a->second), b});
    }
    std::string total = "-";
    if (t) total = t->ok ? num(t->score) : "failed: " + html_escape(t->error);
    h += row({"<b>score</b>", "<b>" + num(s.score) + "</b>", "<b>" + total + "</b>"});
    h += "</table>\n";
    const std::vector<double>& g = state.cache[*best].genome;
    if (const std::string d = ctx.genome->describe(g); !d.empty()) {
      h += "<p>Best candidate: <code>" + html_escape(d) + "</code></p>\n";
    }
    if (ctx.genome->recipe_yaml(g)) {
      h += "<p>Recipe: <code>best.yml</code> (<code>shoal merge best.yml OUT" +
           (config.merge_seed != 0 ? " --seed " + std::to_string(config.merge_seed) : "") +
           "</code> writes <code>best/</code> again, bit for bit).</p>\n";
    }
  }

  // Fitness over evaluations: every candidate told, and the best so far.
  SvgSeries all{"candidate", {}, {}, false, true};
  SvgSeries best_line{"best so far", {}, {}, true, false, true};
  std::set<std::string> task_names;
  for (const auto& e : state.cache) {
    for (const auto& [k, v] : e.metrics.task_scores) task_names.insert(k);
  }
  std::map<std::string, SvgSeries> per_task;
  for (const auto& k : task_names)
    per_task[k] = SvgSeries{"best so far", {}, {}, true, false, true};
  double best_so_far = -INFINITY;
  for (size_t i = 0; i < state.history.size(); ++i) {
    const CandidateMetrics& m = state.cache[state.history[i]].metrics;
    if (!m.ok) continue;
    all.x.push_back(double(i + 1));
    all.y.push_back(m.score);
    if (m.score > best_so_far) {
      best_so_far = m.score;
      best_line.x.push_back(double(i + 1));
      best_line.y.push_back(m.score);
      for (auto& [k, s] : per_task) {
        const auto it = m.task_scores.find(k);
        s.x.push_back(double(i + 1));
        s.y.push_back(it == m.task_scores.end() ? NAN : it->second);
      }
    }
  }
  // Carry the best-so-far lines to the last evaluation.
  const double last = double(state.history.size());
  if (!best_line.x.empty() && best_line.x.back() < last) {
    best_line.x.push_back(last), best_line.y.push_back(best_line.y.back());
    for (auto& [k, s] : per_task) s.x.push_back(last), s.y.push_back(s.y.back());
  }
  h += "<h2>Fitness</h2>\n";
  SvgPlot fitness{"Score on the " + config.fitness.split + " split over evaluations",
                  "candidates evaluated",
                  "score",
                  {all, best_line}};
  fitness.x_integer = true;
  h += render_plot(fitness);
  // One small plot per task: their scores live on different scales.
  for (auto& [k, s] : per_task) {
    SvgPlot p{"Task " + k + ": score of the best candidate so far", "candidates evaluated", k, {}};
    p.x_integer = true;
    p.series.push_back(std::move(s));
    h += render_plot(p, 720, 200);
  }

  // The best genome per layer.
  if (best) {
    const bool per_layer = ctx.genome->layer_axis() == "layer";
    SvgPlot p{per_layer ? "Parameters per layer (best candidate)" : "The best path",
              ctx.genome->layer_axis(),
              "value",
              {}};
    p.x_integer = true;
    for (const LayerSeries& s : ctx.genome->layer_series(state.cache[*best].genome)) {
      SvgSeries line{s.name, {}, s.values, true, true};
      for (size_t l = 0; l < s.values.size(); ++l) line.x.push_back(double(l));
      p.series.push_back(std::move(line));
    }
    h += "<h2>Genome</h2>\n" + render_plot(p, 720, 320);
  }

  // The archive.
  if (state.archive) {
    const MapElitesArchive& a = *state.archive;
    h += "<h2>Archive</h2>\n<p>" + std::to_string(a.size()) + " of " + std::to_string(a.n_cells()) +
         " cells filled. Export an elite with <code>shoal evolve " +
         "export RUN_DIR --rank K OUT</code>.</p>\n";
    if (a.axes().size() <= 2) {
      const ArchiveAxis& ax = a.axes()[0];
      const bool two = a.axes().size() == 2;
      const int rows = two ? a.axes()[1].bins : 1;
      SvgGrid g{
          "Elite score per cell", ax.name + " bin", two ? a.axes()[1].name + " bin" : "", {}, {}};
      g.cells.assign(size_t(rows), std::vector<double>(size_t(ax.bins), NAN));
      double lo = INFINITY, hi = -INFINITY;
      for (const Elite& e : a.elites())
        lo = std::min(lo, -e.fitness), hi = std::max(hi, -e.fitness);
      g.cell_text.assign(size_t(rows * ax.bins), "");
      for (const Elite& e : a.elites()) {
        const int r = two ? e.cell[1] : 0;
        g.cells[r][e.cell[0]] = hi > lo ? (-e.fitness - lo) / (hi - lo) : 1.0;
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3g", -e.fitness);
        g.cell_text[size_t(r * ax.bins + e.cell[0])] = buf;
      }
      h += render_grid(g);
    }
    h += "<table>\n" + row({"rank", "cell", "score", "descriptors"}, "th");
    const auto elites = a.elites();
    for (size_t i = 0; i < elites.size() && i < 50; ++i) {
      std::string cell, desc;
      for (size_t k = 0; k < elites[i].cell.size(); ++k) {
        cell += (k ? ", " : "") + std::to_string(elites[i].cell[k]);
        desc += (k ? ", " : "") + a.axes()[k].name + " " + num(elites[i].descriptors[k]);
      }
      h += row({std::to_string(i), cell, num(-elites[i].fitness), html_escape(desc)});
    }
    h += "</table>\n";
  }

  // Failed candidates (first ten).
  if (state.failures() > 0) {
    h += "<h2>Failed candidates</h2>\n<table>\n" + row({"evaluation", "error"}, "th");
    int shown = 0;
    for (size_t i = 0; i < state.history.size() && shown < 10; ++i) {
      const CandidateMetrics& m = state.cache[state.history[i]].metrics;
      if (m.ok) continue;
      h += row({std::to_string(i + 1), html_escape(m.error)});
      ++shown;
    }
    h += "</table>\n";
  }
  return h + "</body></html>\n";
}

}  // namespace shoal::evolve
