// EVOLVE blocks, SEARCH/REPLACE diffs and fenced code; see population_diff.h. Everything works on
// whole lines, which is how models write these diffs and what makes "matches exactly once" a
// clear rule.
#include "search/population_diff.h"

#include <algorithm>

#include "search/llm_common.h"

namespace shoal::search {
namespace {

bool has(std::string_view line, std::string_view what) {
  return line.find(what) != std::string_view::npos;
}

std::string_view rstrip(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE" (surrounding spaces allowed; 5 to 9 marks, as
// models are not always exact about seven).
bool marker(std::string_view line, char c, std::string_view word) {
  line = rstrip(line);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  size_t n = 0;
  while (n < line.size() && line[n] == c) ++n;
  if (n < 5 || n > 9) return false;
  std::string_view rest = line.substr(n);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return rest == word;
}

struct Block {
  std::vector<std::string> search, replace;
};

// The blocks of an answer, or an error naming the malformed one.
std::vector<Block> parse_blocks(const std::vector<std::string>& lines, std::string& error) {
  std::vector<Block> blocks;
  enum { kOutside, kSearch, kReplace } state = kOutside;
  for (const std::string& line : lines) {
    if (state == kOutside) {
      if (marker(line, '<', "SEARCH")) {
        blocks.emplace_back();
        state = kSearch;
      }
    } else if (state == kSearch) {
      if (marker(line, '=', "")) {
        state = kReplace;
      } else if (marker(line, '>', "REPLACE") || marker(line, '<', "SEARCH")) {
        error = "SEARCH/REPLACE block " + std::to_string(blocks.size()) +
                " is malformed: no '=======' line between SEARCH and REPLACE";
        return {};
      } else {
        blocks.back().search.push_back(line);
      }
    } else if (marker(line, '>', "REPLACE")) {
      state = kOutside;
    } else {
      blocks.back().replace.push_back(line);
    }
  }
  if (state != kOutside) {
    error = "SEARCH/REPLACE block " + std::to_string(blocks.size()) +
            " is not closed by a '>>>>>>> REPLACE' line";
    return {};
  }
  return blocks;
}

// Start lines where `search` matches `lines` inside [first, last).
std::vector<size_t> matches(const std::vector<std::string>& lines,
                            const std::vector<std::string>& search, size_t first, size_t last,
                            bool loose) {
  std::vector<size_t> out;
  for (size_t i = first; i + search.size() <= last; ++i) {
    bool same = true;
    for (size_t k = 0; k < search.size() && same; ++k) {
      same = loose ? rstrip(lines[i + k]) == rstrip(search[k]) : lines[i + k] == search[k];
    }
    if (same) out.push_back(i);
  }
  return out;
}

}  // namespace

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(start, end - start));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

std::optional<std::vector<std::pair<size_t, size_t>>> evolve_ranges(
    const std::vector<std::string>& lines) {
  std::vector<std::pair<size_t, size_t>> ranges;
  bool open = false;
  size_t start = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const bool is_start = has(lines[i], "EVOLVE-BLOCK-START");
    const bool is_end = has(lines[i], "EVOLVE-BLOCK-END");
    if (is_start && is_end) return std::nullopt;
    if (is_start) {
      if (open) return std::nullopt;
      open = true;
      start = i + 1;
    } else if (is_end) {
      if (!open) return std::nullopt;
      open = false;
      ranges.emplace_back(start, i);
    }
  }
  if (open) return std::nullopt;
  if (ranges.empty()) ranges.emplace_back(0, lines.size());
  return ranges;
}

PatchResult apply_search_replace(const std::string& code, const std::string& answer) {
  PatchResult r;
  const std::vector<Block> blocks = parse_blocks(split_lines(answer), r.error);
  if (!r.error.empty()) return r;
  if (blocks.empty()) {
    r.error =
        "the answer holds no SEARCH/REPLACE block ('<<<<<<< SEARCH' ... '=======' ... "
        "'>>>>>>> REPLACE')";
    return r;
  }
  std::vector<std::string> lines = split_lines(code);
  for (size_t b = 0; b < blocks.size(); ++b) {
    const Block& block = blocks[b];
    const std::string name = "SEARCH block " + std::to_string(b + 1);
    const std::string first =
        block.search.empty() ? "" : " (first line: '" + one_line(block.search[0], 80) + "')";
    if (block.search.empty()) {
      r.error = name + " is empty: quote the lines to replace";
      return r;
    }
    const auto ranges = evolve_ranges(lines);
    if (!ranges) {
      r.error = "the program's EVOLVE-BLOCK-START / EVOLVE-BLOCK-END markers are unbalanced";
      return r;
    }
    std::vector<size_t> found;
    for (bool loose : {false, true}) {
      for (const auto& [lo, hi] : *ranges) {
        for (size_t i : matches(lines, block.search, lo, hi, loose)) found.push_back(i);
      }
      if (!found.empty()) break;
    }
    if (found.empty()) {
      const bool frozen = !matches(lines, block.search, 0, lines.size(), true).empty();
      r.error = name +
                (frozen ? " matches only code outside the EVOLVE-BLOCK, which is frozen"
                        : " does not match any lines of the program's EVOLVE-BLOCK") +
                first;
      return r;
    }
    if (found.size() > 1) {
      r.error = name + " matches " + std::to_string(found.size()) +
                " places; quote more lines so that it matches one" + first;
      return r;
    }
    const auto at = lines.begin() + static_cast<std::ptrdiff_t>(found[0]);
    lines.erase(at, at + static_cast<std::ptrdiff_t>(block.search.size()));
    lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(found[0]), block.replace.begin(),
                 block.replace.end());
    if (!evolve_ranges(lines)) {
      r.error = name + " removes or adds an EVOLVE-BLOCK marker" + first;
      return r;
    }
  }
  r.ok = true;
  r.code = join_lines(lines);
  r.blocks = static_cast<int>(blocks.size());
  return r;
}

std::optional<std::string> extract_code(const std::string& answer, const std::string& language) {
  const std::vector<std::string> lines = split_lines(answer);
  std::optional<std::string> first, tagged;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view open = rstrip(lines[i]);
    while (!open.empty() && open.front() == ' ') open.remove_prefix(1);
    if (open.substr(0, 3) != "```") continue;
    const std::string_view tag = open.substr(3);
    size_t j = i + 1;
    while (j < lines.size()) {
      std::string_view l = rstrip(lines[j]);
      while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
      if (l == "```") break;
      ++j;
    }
    if (j >= lines.size()) break;  // unclosed
    std::string body =
        join_lines(std::vector<std::string>(lines.begin() + static_cast<std::ptrdiff_t>(i + 1),
                                            lines.begin() + static_cast<std::ptrdiff_t>(j)));
    if (!first) first = body;
    if (!tagged && tag == language) tagged = body;
    i = j;
  }
  return tagged ? tagged : first;
}

PatchResult splice_rewrite(const std::string& parent, const std::string& answer,
                           const std::string& language) {
  PatchResult r;
  const std::optional<std::string> code = extract_code(answer, language);
  if (!code) {
    r.error = "the answer holds no complete fenced code block (```" + language + " ... ```)";
    return r;
  }
  const std::vector<std::string> old_lines = split_lines(parent);
  const auto old_ranges = evolve_ranges(old_lines);
  const bool parent_marked =
      old_ranges && std::any_of(old_lines.begin(), old_lines.end(),
                                [](const std::string& l) { return has(l, "EVOLVE-BLOCK-START"); });
  if (!parent_marked) {
    r.ok = true;
    r.code = *code;
    return r;
  }
  const std::vector<std::string> new_lines = split_lines(*code);
  const auto new_ranges = evolve_ranges(new_lines);
  const bool new_marked =
      new_ranges && std::any_of(new_lines.begin(), new_lines.end(),
                                [](const std::string& l) { return has(l, "EVOLVE-BLOCK-START"); });
  if (!new_marked || new_ranges->size() != old_ranges->size()) {
    r.error = "the program in the answer must keep the parent's " +
              std::to_string(old_ranges->size()) +
              " EVOLVE-BLOCK-START / EVOLVE-BLOCK-END pair(s); only code between them changes";
    return r;
  }
  // Rebuild from the parent's frozen lines and the answer's block contents.
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t b = 0; b < old_ranges->size(); ++b) {
    const auto [lo, hi] = (*old_ranges)[b];
    out.insert(out.end(), old_lines.begin() + static_cast<std::ptrdiff_t>(pos),
               old_lines.begin() + static_cast<std::ptrdiff_t>(lo));
    const auto [nlo, nhi] = (*new_ranges)[b];
    out.insert(out.end(), new_lines.begin() + static_cast<std::ptrdiff_t>(nlo),
               new_lines.begin() + static_cast<std::ptrdiff_t>(nhi));
    pos = hi;
  }
  out.insert(out.end(), old_lines.begin() + static_cast<std::ptrdiff_t>(pos), old_lines.end());
  r.ok = true;
  r.code = join_lines(out);
  return r;
}

}  // namespace shoal::search
