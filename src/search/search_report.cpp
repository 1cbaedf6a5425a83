// tree.html: one self-contained file (no network, no external script) that shows a search tree.
// The data is embedded as JSON in a <script type="application/json"> block and every text is
// put into the page with textContent, so answers (often code with '<' and '&') need no escaping
// beyond keeping "</script" out of the block.
#include <string>

#include "shoal/search.h"
#include "shoal/search_run.h"

namespace shoal {
namespace {

// The page's data, from the Search rebuilt from the checkpoint (so the report does not depend on
// the checkpoint's key names).
nlohmann::json report_data(const nlohmann::json& tree) {
  const auto search = resume_search(tree.at("search"));
  nlohmann::json models = tree.value("models", nlohmann::json::array());
  nlohmann::json nodes = nlohmann::json::array();
  for (const SearchNode& n : search->nodes()) {
    if (n.id == kRootNode) continue;
    nodes.push_back({{"id", n.id},
                     {"parent", n.parent},
                     {"action", n.action},
                     {"depth", n.depth},
                     {"score", n.score},
                     {"state", n.state},
                     {"meta", n.meta}});
  }
  nlohmann::json best = nlohmann::json::array();
  for (const int64_t id : search->top_k(10)) best.push_back(id);
  return {{"task", tree.value("task", "")},
          {"status", tree.value("status", "")},
          {"algorithm", std::string(search->algorithm())},
          {"params", search->params()},
          {"models", std::move(models)},
          {"totals", tree.value("totals", nlohmann::json::object())},
          {"pending", static_cast<int64_t>(search->pending().size())},
          {"nodes", std::move(nodes)},
          {"best", std::move(best)}};
}

constexpr const char* kHead = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shoal search</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header { padding: 10px 16px; background: #f3f4f6; border-bottom: 1px solid #ddd; }
header h1 { font-size: 16px; margin: 0 0 4px 0; }
.facts span { margin-right: 16px; }
main { display: flex; height: calc(100vh - 110px); }
#tree { flex: 1 1 45%; overflow: auto; padding: 8px 12px; border-right: 1px solid #ddd; }
#detail { flex: 1 1 55%; overflow: auto; padding: 8px 16px; }
ul { list-style: none; padding-left: 18px; margin: 0; }
#tree > ul { padding-left: 0; }
.node { cursor: pointer; padding: 1px 4px; border-radius: 3px; white-space: nowrap; }
.node:hover { background: #e8eefc; }
.node.sel { background: #cfdcfb; }
.score { display: inline-block; min-width: 44px; text-align: right; font-family: monospace;
         padding: 0 4px; border-radius: 3px; color: #000; }
.toggle { display: inline-block; width: 14px; color: #888; }
.model { color: #444; margin-left: 6px; }
.star { color: #c80; }
.bad { color: #b00; }
pre { background: #f8f8f8; border: 1px solid #e3e3e3; padding: 8px; white-space: pre-wrap;
      word-break: break-word; }
table { border-collapse: collapse; margin: 6px 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
</style></head><body>
<header><h1 id="title">shoal search</h1><div class="facts" id="facts"></div>
<table id="models"></table></header>
<main><div id="tree"></div><div id="detail"><p>Click a node to see its answer and feedback.</p>
</div></main>
<script type="application/json" id="data">)HTML";

constexpr const char* kTail = R"HTML(</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
};
const modelName = (a) => (data.models[a] && data.models[a].name) || ("action " + a);
const color = (s) => "hsl(" + Math.round(120 * s) + ", 70%, 75%)";
const fmt = (x, d) => (typeof x === "number" ? x.toFixed(d) : "-");
const byId = new Map(), kids = new Map([[0, []]]);
for (const n of data.nodes) { byId.set(n.id, n); kids.set(n.id, []); }
for (const n of data.nodes) (kids.get(n.parent) || kids.get(0)).push(n.id);
const best = new Set(data.best);
const rank = new Map(data.best.map((id, i) => [id, i + 1]));

document.getElementById("title").textContent = "shoal search: " + data.task;
const facts = document.getElementById("facts");
const t = data.totals || {};
for (const f of [
  "status: " + data.status, "algorithm: " + data.algorithm, "answers: " + data.nodes.length,
  "pending: " + data.pending, "calls: " + t.calls, "failed: " + t.failed_calls,
  "scorer failures: " + t.scorer_failures, "tokens: " + t.input_tokens + " in / " +
  t.output_tokens + " out", "cost: $" + fmt(t.cost_usd, 4),
  "best: " + (data.best.length ? fmt(byId.get(data.best[0]).score, 3) : "-")]) {
  facts.appendChild(el("span", f));
}
const models = document.getElementById("models");
const hr = el("tr");
for (const h of ["model", "backend", "answers", "best", "mean"]) hr.appendChild(el("th", h));
models.appendChild(hr);
data.models.forEach((m, a) => {
  const scores = data.nodes.filter((n) => n.action === a).map((n) => n.score);
  const tr = el("tr");
  tr.appendChild(el("td", m.name));
  tr.appendChild(el("td", m.describe || m.backend));
  tr.appendChild(el("td", String(scores.length)));
  tr.appendChild(el("td", scores.length ? fmt(Math.max(...scores), 3) : "-"));
  tr.appendChild(el("td", scores.length ? fmt(scores.reduce((x, y) => x + y, 0) / scores.length, 3) : "-"));
  models.appendChild(tr);
});

let selected = null;
function show(n, row) {
  if (selected) selected.classList.remove("sel");
  selected = row; row.classList.add("sel");
  const d = document.getElementById("detail");
  d.replaceChildren();
  const m = n.meta || {};
  d.appendChild(el("h2", "#" + n.id + " by " + modelName(n.action) + ": score " + fmt(n.score, 3)));
  const info = el("p");
  info.textContent = "depth " + n.depth + ", parent " + (n.parent === 0 ? "root" : "#" + n.parent) +
    (rank.has(n.id) ? ", rank " + rank.get(n.id) : "") +
    ", tokens " + (m.input_tokens ?? "-") + " in / " + (m.output_tokens ?? "-") + " out" +
    ", cost $" + fmt(m.cost_usd, 5) + ", call " + fmt(m.latency_s, 2) + " s, scorer " +
    fmt(m.scorer_s, 2) + " s" + (m.finish_reason ? ", finish " + m.finish_reason : "");
  d.appendChild(info);
  d.appendChild(el("h3", "Feedback" + (m.scorer_ok === false ? " (the scorer failed)" : "")));
  d.appendChild(el("pre", m.feedback ?? "", m.scorer_ok === false ? "bad" : ""));
  d.appendChild(el("h3", "Answer"));
  d.appendChild(el("pre", n.state));
}
function build(id) {
  const ul = el("ul");
  for (const c of kids.get(id)) {
    const n = byId.get(c), li = el("li"), row = el("div", undefined, "node");
    const sub = kids.get(c).length ? build(c) : null;
    const tog = el("span", sub ? "\u25be" : "", "toggle");
    row.appendChild(tog);
    const sc = el("span", fmt(n.score, 3), "score");
    sc.style.background = color(n.score);
    row.appendChild(sc);
    row.appendChild(el("span", "#" + n.id, ""));
    row.appendChild(el("span", modelName(n.action), "model"));
    if (best.has(n.id)) row.appendChild(el("span", " \u2605" + rank.get(n.id), "star"));
    if (n.meta && n.meta.scorer_ok === false) row.appendChild(el("span", " scorer failed", "bad"));
    row.addEventListener("click", (e) => {
      if (sub && e.target === tog) {
        sub.hidden = !sub.hidden;
        tog.textContent = sub.hidden ? "\u25b8" : "\u25be";
      } else {
        show(n, row);
      }
    });
    li.appendChild(row);
    if (sub) li.appendChild(sub);
    ul.appendChild(li);
  }
  return ul;
}
document.getElementById("tree").appendChild(build(0));
</script></body></html>
)HTML";

}  // namespace

std::string search_report_html(const nlohmann::json& tree) {
  std::string json =
      report_data(tree).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // '<' only occurs inside JSON strings, where \u003c means the same: no "</script>" can end the
  // block early.
  std::string safe;
  safe.reserve(json.size());
  for (char c : json) {
    if (c == '<') {
      safe += "\\u003c";
    } else {
      safe += c;
    }
  }
  return std::string(kHead) + safe + kTail;
}

}  // namespace shoal
