// Prompt templates: text with {field} placeholders filled from a JSONL record. `{{` and `}}` are
// literal braces. A field name may be a dotted path into nested objects ("choices.text"); a key
// that itself contains dots is found first. Implemented in template.cpp.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal::eval {

class Template {
 public:
  // Splits `text` into literal pieces and fields; nullopt with `error` set for an unclosed '{',
  // a stray '}' or an empty "{}".
  static std::optional<Template> parse(std::string_view text, std::string* error);

  // The template with every field replaced by its value's text (see field_text). Throws
  // FormatError("<where>: missing field 'x' (used by <used_by>)") or a message naming a field
  // whose value is not a string, number or boolean.
  std::string render(const nlohmann::json& record, std::string_view where,
                     std::string_view used_by) const;

  // The field names used, in order of appearance.
  std::vector<std::string> fields() const;

 private:
  struct Piece {
    bool is_field = false;
    std::string text;  // literal text, or the field name
  };
  std::vector<Piece> pieces_;
};

// The value at `path` in `record` (a key, else a dotted path), or nullptr when absent.
const nlohmann::json* find_field(const nlohmann::json& record, std::string_view path);

// A string as is; an integer in decimal; a float as JSON writes it; true / false. nullopt for
// null, arrays and objects.
std::optional<std::string> field_text(const nlohmann::json& value);

}  // namespace shoal::eval
