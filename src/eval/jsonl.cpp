// JSONL datasets: one JSON object per line. Each line is parsed on its own so that an error
// names the line in the file (nlohmann's own position would be relative to the line).
#include <cerrno>
#include <fstream>
#include <string>

#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {

std::vector<JsonlRecord> read_jsonl(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open dataset " + file.string()));
  std::vector<JsonlRecord> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(line_no);
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      // nlohmann counts lines within the one line it was given; only the column helps.
      std::string detail = io::json_error_text(e);
      if (const size_t at = detail.find("at line 1, column"); at != std::string::npos) {
        detail.replace(at, 17, "at column");
      }
      throw FormatError(where + ": not a valid JSON line (" + detail + ")");
    }
    if (!value.is_object()) {
      throw FormatError(where + ": expected a JSON object, got " + io::bounded_dump(value));
    }
    out.push_back({std::move(value), line_no});
  }
  if (in.bad()) throw IoError(errno_message("cannot read dataset " + file.string()));
  return out;
}

}  // namespace shoal
