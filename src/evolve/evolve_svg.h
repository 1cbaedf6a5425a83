// Small inline-SVG charts for the evolve report: x/y plots with "nice" ticks (1, 2, 5 x 10^k),
// lines and/or points per series, a legend; and a heat grid for a 1- or 2-axis archive. Output
// is deterministic text (numbers printed with fixed precision). Implemented in
// src/evolve/evolve_svg.cpp.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace shoal::evolve {

struct SvgSeries {
  std::string name;
  std::vector<double> x, y;  // non-finite points are skipped
  bool line = true;
  bool points = false;
  bool step = false;  // a step line (value holds until the next x)
};

struct SvgPlot {
  std::string title;
  std::string x_label, y_label;
  std::vector<SvgSeries> series;
  std::optional<double> y_min, y_max;  // fixed range; else from the data, padded by 5%
  bool x_integer = false;              // ticks on whole numbers only (layers, evaluations)
};

std::string render_plot(const SvgPlot& plot, int width = 720, int height = 300);

// cells[row][column] in [0, 1] (or NaN for an empty cell); labels per axis.
struct SvgGrid {
  std::string title;
  std::string x_label, y_label;
  std::vector<std::vector<double>> cells;
  std::vector<std::string> cell_text;  // row-major, shown in each cell (may be empty)
};
std::string render_grid(const SvgGrid& grid, int cell_px = 36);

// HTML text escaping (&, <, >, ").
std::string html_escape(const std::string& s);

}  // namespace shoal::evolve
