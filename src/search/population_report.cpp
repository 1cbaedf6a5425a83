// report.html of a population search: one self-contained page (no script, no network) built on
// the server side from the database: best score over programs (SVG), the islands and their
// grids, outcomes per model, and the lineage of the best program with a side-by-side diff of
// each step. Every text from the database is HTML-escaped.
#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "search/population_diff.h"
#include "search/population_run.h"
#include "search/program_db.h"
#include "shoal/population.h"

namespace shoal {
namespace {

using search::Program;

std::string esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

struct DiffRow {
  std::string left, right;
  char kind;  // '=' same, '-' only left, '+' only right, '~' changed
};

// Line diff by longest common subsequence; removals and additions next to each other are paired
// as changed rows. Very long programs (over 4M line pairs) are shown whole, side by side.
std::vector<DiffRow> side_by_side(const std::string& a, const std::string& b) {
  const std::vector<std::string> x = search::split_lines(a), y = search::split_lines(b);
  const size_t n = x.size(), m = y.size();
  std::vector<DiffRow> rows;
  if (n * m > 4000000) {
    for (size_t i = 0; i < std::max(n, m); ++i) {
      rows.push_back({i < n ? x[i] : "", i < m ? y[i] : "", '~'});
    }
    return rows;
  }
  std::vector<uint32_t> lcs((n + 1) * (m + 1), 0);
  const auto at = [&](size_t i, size_t j) -> uint32_t& { return lcs[i * (m + 1) + j]; };
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      at(i, j) = x[i] == y[j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    }
  }
  std::vector<std::string> dels, adds;
  const auto flush = [&] {
    const size_t k = std::max(dels.size(), adds.size());
    for (size_t t = 0; t < k; ++t) {
      const bool l = t < dels.size(), r = t < adds.size();
      rows.push_back({l ? dels[t] : "", r ? adds[t] : "", l && r ? '~' : l ? '-' : '+'});
    }
    dels.clear();
    adds.clear();
  };
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] == y[j]) {
      flush();
      rows.push_back({x[i], y[j], '='});
      ++i;
      ++j;
    } else if (j < m && (i == n || at(i, j + 1) >= at(i + 1, j))) {
      adds.push_back(y[j++]);
    } else {
      dels.push_back(x[i++]);
    }
  }
  flush();
  return rows;
}

std::string diff_table(const std::string& a, const std::string& b) {
  std::ostringstream o;
  o << "<table class=diff>";
  for (const DiffRow& r : side_by_side(a, b)) {
    const char* lc = r.kind == '=' ? "" : r.kind == '+' ? " class=empty" : " class=del";
    const char* rc = r.kind == '=' ? "" : r.kind == '-' ? " class=empty" : " class=add";
    o << "<tr><td" << lc << ">" << esc(r.left) << "</td><td" << rc << ">" << esc(r.right)
      << "</td></tr>";
  }
  o << "</table>";
  return o.str();
}

const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                               "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

// Every program's score (dots, by island) and the running best (line) over program ids.
std::string score_chart(const std::vector<Program>& programs) {
  const double w = 760, h = 260, pad = 40;
  double lo = 0, hi = 0;
  bool any = false;
  for (const Program& p : programs) {
    if (!p.correct) continue;
    lo = any ? std::min(lo, p.score) : p.score;
    hi = any ? std::max(hi, p.score) : p.score;
    any = true;
  }
  if (!any) return "<p>No correct program yet.</p>";
  if (hi <= lo) hi = lo + 1;
  const double n = std::max<double>(2, static_cast<double>(programs.size()));
  const auto px = [&](double id) { return pad + (id - 1) / (n - 1) * (w - 2 * pad); };
  const auto py = [&](double s) { return h - pad - (s - lo) / (hi - lo) * (h - 2 * pad); };
  std::ostringstream o;
  o << "<svg width=" << w << " height=" << h << " viewBox='0 0 " << w << " " << h << "'>";
  o << "<rect x=" << pad << " y=" << pad << " width=" << w - 2 * pad << " height=" << h - 2 * pad
    << " fill=none stroke='#ccc'/>";
  o << "<text x=4 y=" << pad << " font-size=11>" << num(hi) << "</text><text x=4 y=" << h - pad
    << " font-size=11>" << num(lo) << "</text><text x=" << w / 2 << " y=" << h - 8
    << " font-size=11>program id (order of evaluation)</text>";
  std::string line;
  double best = 0;
  bool have = false;
  for (const Program& p : programs) {
    if (!p.correct) continue;
    if (!have || p.score > best) {
      if (have) line += num(px(static_cast<double>(p.id))) + "," + num(py(best)) + " ";
      best = p.score;
      have = true;
    }
    line += num(px(static_cast<double>(p.id))) + "," + num(py(best)) + " ";
    o << "<circle cx=" << num(px(static_cast<double>(p.id))) << " cy=" << num(py(p.score))
      << " r=2 fill='" << kColors[p.island % 8] << "'><title>#" << p.id << " island " << p.island
      << " " << esc(p.op) << " " << num(p.score) << "</title></circle>";
  }
  o << "<polyline fill=none stroke=black stroke-width=1.5 points='" << line << "'/></svg>";
  return o.str();
}

}  // namespace

std::string population_report_html(const std::filesystem::path& db_path) {
  search::ProgramDb db = search::ProgramDb::open(db_path);
  const nlohmann::json& meta = db.meta();
  const PopulationParams params =
      parse_population_params(nlohmann::json::object(), db_path.parent_path());
  std::vector<std::string> models;
  for (const auto& m : meta.value("models", nlohmann::json::array())) models.push_back(m);
  // The stored parameters drive the grid; only the keys the state needs are read back.
  PopulationParams stored = params;
  const nlohmann::json& sp = meta.value("params", nlohmann::json::object());
  stored.islands = sp.value("islands", 1);
  stored.archive_size = sp.value("archive_size", 20);
  stored.novelty.enabled = false;  // no signatures needed here
  stored.grid.clear();
  for (const auto& d : sp.value("grid", nlohmann::json::array())) {
    stored.grid.push_back({d.value("metric", "code_length"), d.value("min", 0.0),
                           d.value("max", 1.0), d.value("bins", 1)});
  }
  if (stored.grid.empty()) stored.grid.push_back({});
  const search::PopulationState state = search::rebuild_state(db, stored, models);
  const search::DbTotals t = db.totals();
  const std::vector<Program>& programs = state.programs();

  std::ostringstream o;
  o << "<!doctype html><html><head><meta charset=utf-8><title>shoal population search</title>"
       "<style>body{font:14px sans-serif;margin:20px}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
       ".diff{font:12px monospace;width:100%;table-layout:fixed}.diff td{white-space:pre-wrap;"
       "border:none;border-right:1px solid #ddd}.del{background:#fdd}.add{background:#dfd}"
       ".empty{background:#f4f4f4}pre{background:#f8f8f8;padding:6px;white-space:pre-wrap}"
       "</style></head><body><h1>Population search</h1>";
  o << "<pre>" << esc(meta.value("problem", "").substr(0, 600)) << "</pre>";
  o << "<p>" << t.programs << " programs from " << t.proposals << " proposals, " << t.calls
    << " calls (" << t.failed_calls << " failed), " << t.eval_failures << " failed evaluations, $"
    << num(t.cost_usd) << ", " << t.runs << " run(s).</p>";
  o << "<h2>Best score over programs</h2>" << score_chart(programs);

  o << "<h2>Islands</h2><table><tr><th>island</th><th>programs</th><th>correct</th>"
       "<th>grid cells filled</th><th>best</th></tr>";
  for (int i = 0; i < stored.islands; ++i) {
    const auto& members = state.members(i);
    int64_t correct = 0, best = -1;
    for (int64_t id : members) {
      const Program& p = state.program(id);
      correct += p.correct ? 1 : 0;
      if (p.correct && (best < 0 || p.score > state.program(best).score)) best = id;
    }
    o << "<tr><td style='color:" << kColors[i % 8] << "'>" << i << "</td><td>" << members.size()
      << "</td><td>" << correct << "</td><td>" << state.elites(i).size() << "</td><td>"
      << (best > 0 ? num(state.program(best).score) + " (#" + std::to_string(best) + ")" : "-")
      << "</td></tr>";
  }
  o << "</table>";
  if (stored.grid.size() <= 2) {
    const PopulationDescriptor& a = stored.grid[0];
    const int rows = stored.grid.size() == 2 ? a.bins : 1;
    const int cols = stored.grid.size() == 2 ? stored.grid[1].bins : a.bins;
    o << "<h3>MAP-Elites grids (elite score per cell; " << esc(a.metric)
      << (stored.grid.size() == 2 ? " down, " + esc(stored.grid[1].metric) + " across" : "")
      << ")</h3>";
    for (int i = 0; i < stored.islands; ++i) {
      o << "<p>island " << i << "</p><table>";
      for (int r = 0; r < rows; ++r) {
        o << "<tr>";
        for (int c = 0; c < cols; ++c) {
          const int64_t id = state.elite_at(i, static_cast<int64_t>(r) * cols + c);
          o << "<td>" << (id > 0 ? num(state.program(id).score) + " #" + std::to_string(id) : "")
            << "</td>";
        }
        o << "</tr>";
      }
      o << "</table>";
    }
  }

  o << "<h2>Proposals per model</h2><table><tr><th>model</th><th>proposals</th>"
       "<th>mean reward</th><th>cost (USD)</th></tr>";
  for (size_t m = 0; m < models.size(); ++m) {
    const search::ModelStats& s = state.model_stats()[m];
    o << "<tr><td>" << esc(models[m]) << "</td><td>" << s.n << "</td><td>"
      << num(s.n > 0 ? s.reward / static_cast<double>(s.n) : 0) << "</td><td>" << num(s.cost)
      << "</td></tr>";
  }
  o << "</table>";
  std::map<std::string, int> outcomes;
  for (const search::ProposalRow& r : db.load_proposals()) outcomes[r.outcome] += 1;
  o << "<p>Outcomes: ";
  for (const auto& [k, v] : outcomes) o << esc(k) << " " << v << "; ";
  o << "</p>";

  const int64_t best = state.best();
  o << "<h2>Lineage of the best program</h2>";
  if (best <= 0) {
    o << "<p>No program yet.</p>";
  } else {
    std::vector<int64_t> chain;
    for (int64_t id = best; id > 0 && chain.size() < 10000;) {
      chain.push_back(id);
      const Program& p = state.program(id);
      id = p.parent > 0 ? p.parent : p.migrated_from;
    }
    std::reverse(chain.begin(), chain.end());
    for (size_t k = 0; k < chain.size(); ++k) {
      const Program& p = state.program(chain[k]);
      o << "<h3>#" << p.id << ": " << esc(p.op) << (p.model.empty() ? "" : " by " + esc(p.model))
        << ", island " << p.island << ", score " << num(p.score)
        << (p.correct ? "" : " (incorrect)")
        << (p.parent2 > 0 ? ", second parent #" + std::to_string(p.parent2) : "") << "</h3>";
      if (!p.feedback.empty()) o << "<p>" << esc(p.feedback) << "</p>";
      if (k == 0) {
        o << "<pre>" << esc(p.code) << "</pre>";
      } else {
        o << diff_table(state.program(chain[k - 1]).code, p.code);
      }
    }
  }
  o << "</body></html>\n";
  return o.str();
}

}  // namespace shoal
