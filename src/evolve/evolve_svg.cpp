// Inline SVG charts for report.html. Plain text built by hand: no dependency, deterministic.
#include "evolve/evolve_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace shoal::evolve {
namespace {

// A colour-blind-safe palette (Okabe & Ito), cycled.
constexpr const char* kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                   "#E69F00", "#56B4E9", "#000000", "#F0E442"};

std::string fmt(double v, int precision = 1) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

// A tick label: up to 4 significant digits, no trailing zeros.
std::string tick_label(double v) {
  if (std::fabs(v) < 1e-12) return "0";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Ticks covering [lo, hi] with a step of 1, 2 or 5 x 10^k, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target, bool integer = false) {
  double raw = (hi - lo) / std::max(1, target);
  if (integer) raw = std::max(raw, 1.0);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> out;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    out.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  }
  return out;
}

void range_of(const SvgPlot& p, bool y, double& lo, double& hi) {
  lo = INFINITY, hi = -INFINITY;
  for (const auto& s : p.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double v = y ? s.y[i] : s.x[i];
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    const double pad = std::max(1e-3, std::fabs(hi) * 0.05);
    lo -= pad, hi += pad;
  }
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
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

std::string render_plot(const SvgPlot& p, int width, int height) {
  const int left = 64, right = 180, top = 28, bottom = 44;
  const double pw = width - left - right, ph = height - top - bottom;
  double x0, x1, y0, y1;
  range_of(p, false, x0, x1);
  range_of(p, true, y0, y1);
  const double pad = 0.05 * (y1 - y0);
  y0 = p.y_min ? *p.y_min : y0 - pad;
  y1 = p.y_max ? *p.y_max : y1 + pad;
  const auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  const auto sy = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };

  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
                  "\" height=\"" + std::to_string(height) + "\" font-family=\"sans-serif\" " +
                  "font-size=\"11\">\n";
  o += "<text x=\"" + std::to_string(left) + "\" y=\"16\" font-size=\"13\" font-weight=\"bold\">" +
       html_escape(p.title) + "</text>\n";
  o += "<rect x=\"" + std::to_string(left) + "\" y=\"" + std::to_string(top) + "\" width=\"" +
       fmt(pw) + "\" height=\"" + fmt(ph) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (const double t : nice_ticks(x0, x1, 8, p.x_integer)) {
    o += "<line x1=\"" + fmt(sx(t)) + "\" y1=\"" + fmt(top + ph) + "\" x2=\"" + fmt(sx(t)) +
         "\" y2=\"" + fmt(top + ph + 4) + "\" stroke=\"#888\"/><text x=\"" + fmt(sx(t)) +
         "\" y=\"" + fmt(top + ph + 16) + "\" text-anchor=\"middle\">" + tick_label(t) +
         "</text>\n";
  }
  for (const double t : nice_ticks(y0, y1, 5)) {
    o += "<line x1=\"" + std::to_string(left) + "\" y1=\"" + fmt(sy(t)) + "\" x2=\"" +
         fmt(left + pw) + "\" y2=\"" + fmt(sy(t)) + "\" stroke=\"#eee\"/><text x=\"" +
         std::to_string(left - 6) + "\" y=\"" + fmt(sy(t) + 4) + "\" text-anchor=\"end\">" +
         tick_label(t) + "</text>\n";
  }
  o += "<text x=\"" + fmt(left + pw / 2) + "\" y=\"" + std::to_string(height - 8) +
       "\" text-anchor=\"middle\">" + html_escape(p.x_label) + "</text>\n";
  o += "<text transform=\"translate(14," + fmt(top + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + html_escape(p.y_label) + "</text>\n";

  for (size_t k = 0; k < p.series.size(); ++k) {
    const SvgSeries& s = p.series[k];
    const std::string color = kColors[k % std::size(kColors)];
    std::string path;
    double prev_y = NAN;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double y = std::clamp(s.y[i], y0, y1);
      if (path.empty()) {
        path = "M" + fmt(sx(s.x[i])) + " " + fmt(sy(y));
      } else {
        if (s.step) path += " L" + fmt(sx(s.x[i])) + " " + fmt(sy(prev_y));
        path += " L" + fmt(sx(s.x[i])) + " " + fmt(sy(y));
      }
      prev_y = y;
      if (s.points) {
        o += "<circle cx=\"" + fmt(sx(s.x[i])) + "\" cy=\"" + fmt(sy(y)) + "\" r=\"2\" fill=\"" +
             color + "\" fill-opacity=\"0.5\"/>\n";
      }
    }
    if (s.line && !path.empty()) {
      o += "<path d=\"" + path + "\" fill=\"none\" stroke=\"" + color +
           "\" stroke-width=\"1.5\"/>\n";
    }
    const double ly = top + 10 + 16.0 * double(k);
    o += "<rect x=\"" + fmt(left + pw + 10) + "\" y=\"" + fmt(ly - 8) +
         "\" width=\"10\" height=\"10\" fill=\"" + color + "\"/><text x=\"" + fmt(left + pw + 24) +
         "\" y=\"" + fmt(ly + 1) + "\">" + html_escape(s.name) + "</text>\n";
  }
  return o + "</svg>\n";
}

std::string render_grid(const SvgGrid& g, int cell) {
  const size_t rows = g.cells.size(), cols = rows > 0 ? g.cells[0].size() : 0;
  const int left = 48, top = 28;
  const int width = left + int(cols) * cell + 16, height = top + int(rows) * cell + 36;
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
                  "\" height=\"" + std::to_string(height) +
                  "\" font-family=\"sans-serif\" font-size=\"10\">\n";
  o += "<text x=\"" + std::to_string(left) + "\" y=\"16\" font-size=\"13\" font-weight=\"bold\">" +
       html_escape(g.title) + "</text>\n";
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      const double v = g.cells[r][c];
      // Row 0 at the bottom, as on a plot.
      const int x = left + int(c) * cell, y = top + int(rows - 1 - r) * cell;
      std::string fill = "#f4f4f4";
      if (std::isfinite(v)) {
        const int shade = int(std::lround(230 - 180 * std::clamp(v, 0.0, 1.0)));
        fill = "rgb(" + std::to_string(shade) + "," + std::to_string(shade) + ",255)";
      }
      o += "<rect x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(y) + "\" width=\"" +
           std::to_string(cell - 1) + "\" height=\"" + std::to_string(cell - 1) + "\" fill=\"" +
           fill + "\"/>\n";
      const size_t i = r * cols + c;
      if (i < g.cell_text.size() && !g.cell_text[i].empty()) {
        o += "<text x=\"" + std::to_string(x + cell / 2) + "\" y=\"" +
             std::to_string(y + cell / 2 + 3) + "\" text-anchor=\"middle\">" +
             html_escape(g.cell_text[i]) + "</text>\n";
      }
    }
  }
  o += "<text x=\"" + std::to_string(left + int(cols) * cell / 2) + "\" y=\"" +
       std::to_string(height - 10) + "\" text-anchor=\"middle\">" + html_escape(g.x_label) +
       "</text>\n";
  o += "<text transform=\"translate(18," + std::to_string(top + int(rows) * cell / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + html_escape(g.y_label) + "</text>\n";
  return o + "</svg>\n";
}

}  // namespace shoal::evolve
