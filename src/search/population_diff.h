// Turning an LLM's answer into a program (internal to the search layer): EVOLVE-BLOCK markers,
// SEARCH/REPLACE diffs applied inside them, fenced code blocks, and full rewrites spliced into
// the parent so the frozen code outside the blocks stays as it was. Implemented in
// population_diff.cpp; docs/POPULATION.md, "Operators", gives the formats.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shoal::search {

// Lines [first, last) that may change: the lines strictly between a line holding
// "EVOLVE-BLOCK-START" and the next line holding "EVOLVE-BLOCK-END". A program without markers is
// editable as a whole (one range over every line). Unbalanced or nested markers: nullopt.
std::optional<std::vector<std::pair<size_t, size_t>>> evolve_ranges(
    const std::vector<std::string>& lines);

// Lines of a text ('\r' dropped); a final newline does not make an empty last line.
std::vector<std::string> split_lines(std::string_view text);
std::string join_lines(const std::vector<std::string>& lines);  // each line ends with '\n'

struct PatchResult {
  bool ok = false;
  std::string code;   // the new program when ok
  std::string error;  // one line saying what did not apply, for the log and the retry prompt
  int blocks = 0;     // SEARCH/REPLACE blocks applied
};

// Applies every "<<<<<<< SEARCH / ======= / >>>>>>> REPLACE" block of `answer`, in order, each
// to the program as the earlier ones left it. A SEARCH text must match whole lines inside one
// editable range exactly once (exact lines first, then ignoring trailing whitespace). Fails, with
// the block's number and first line, when a block is malformed, matches nothing, matches only
// frozen code, or matches several places; or when the answer holds no block.
PatchResult apply_search_replace(const std::string& code, const std::string& answer);

// The code of the first fenced block tagged `language`, else of the first fenced block; nullopt
// when the answer has no complete fenced block.
std::optional<std::string> extract_code(const std::string& answer, const std::string& language);

// A full program from the model (rewrite, crossover, fix, new) made into the child: when the
// parent has EVOLVE blocks, the answer's blocks replace the parent's, in order (their number must
// match), so the frozen code is kept; without markers the answer is the program.
PatchResult splice_rewrite(const std::string& parent, const std::string& answer,
                           const std::string& language);

}  // namespace shoal::search
