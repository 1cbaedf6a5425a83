// Prompt templates. Rendering happens once per record when a task is loaded, so this favours
// clear messages over speed.
#include "eval/template.h"

#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::eval {

std::optional<Template> Template::parse(std::string_view text, std::string* error) {
  Template t;
  std::string literal;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      ++i;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      literal += '}';
      ++i;
    } else if (c == '{') {
      const size_t close = text.find_first_of("{}", i + 1);
      if (close == std::string_view::npos || text[close] != '}') {
        *error =
            "'{' at offset " + std::to_string(i) + " is not closed by '}' (write {{ for a brace)";
        return std::nullopt;
      }
      if (close == i + 1) {
        *error = "empty placeholder '{}' at offset " + std::to_string(i);
        return std::nullopt;
      }
      if (!literal.empty()) t.pieces_.push_back({false, std::move(literal)});
      literal.clear();
      t.pieces_.push_back({true, std::string(text.substr(i + 1, close - i - 1))});
      i = close;
    } else if (c == '}') {
      *error = "'}' at offset " + std::to_string(i) + " has no '{' (write }} for a brace)";
      return std::nullopt;
    } else {
      literal += c;
    }
  }
  if (!literal.empty()) t.pieces_.push_back({false, std::move(literal)});
  return t;
}

std::string Template::render(const nlohmann::json& record, std::string_view where,
                             std::string_view used_by) const {
  std::string out;
  for (const Piece& p : pieces_) {
    if (!p.is_field) {
      out += p.text;
      continue;
    }
    const nlohmann::json* value = find_field(record, p.text);
    if (value == nullptr) {
      throw FormatError(std::string(where) + ": missing field " + io::quoted(p.text) +
                        " (used by " + std::string(used_by) + ")");
    }
    const auto text = field_text(*value);
    if (!text) {
      throw FormatError(std::string(where) + ": field " + io::quoted(p.text) + " is " +
                        io::bounded_dump(*value) + ", expected a string or a number (used by " +
                        std::string(used_by) + ")");
    }
    out += *text;
  }
  return out;
}

std::vector<std::string> Template::fields() const {
  std::vector<std::string> out;
  for (const Piece& p : pieces_) {
    if (p.is_field) out.push_back(p.text);
  }
  return out;
}

const nlohmann::json* find_field(const nlohmann::json& record, std::string_view path) {
  if (!record.is_object()) return nullptr;
  const auto whole = record.find(std::string(path));
  if (whole != record.end()) return &*whole;
  const size_t dot = path.find('.');
  if (dot == std::string_view::npos) return nullptr;
  const auto head = record.find(std::string(path.substr(0, dot)));
  if (head == record.end()) return nullptr;
  return find_field(*head, path.substr(dot + 1));
}

std::optional<std::string> field_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return value.dump();
  if (value.is_number_float()) return value.dump();
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  return std::nullopt;
}

}  // namespace shoal::eval
