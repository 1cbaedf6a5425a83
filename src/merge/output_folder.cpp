#include "merge/output_folder.h"

#include <fstream>
#include <sstream>

#include "io/gguf_tokenizer.h"
#include "shoal/error.h"

namespace shoal::merge {
namespace {

namespace fs = std::filesystem;

// ChatML, as Qwen and many merges use it.
constexpr const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot read " + path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string model_card(const Recipe& recipe, const MergePlan& plan) {
  std::ostringstream card;
  card << "---\n";
  if (plan.base_model >= 0) {
    card << "base_model:\n- " << plan.model_paths[plan.base_model].string() << "\n";
  }
  card << "library_name: transformers\ntags:\n- merge\n- shoal\n---\n";
  card << "# "
       << "Merged model\n\n";
  card << "This model was merged with shoal using the " << recipe.merge_method << " method";
  if (plan.base_model >= 0)
    card << ", with " << plan.model_paths[plan.base_model].string() << " as the base";
  card << ".\n\n## Models merged\n\n";
  for (size_t i = 0; i < plan.model_paths.size(); ++i) {
    card << "- " << plan.model_paths[i].string() << "\n";
  }
  card << "\n## Configuration\n\nThe recipe (also in mergekit_config.yml; `shoal merge` reproduces "
          "this model from it):\n\n```yaml\n"
       << recipe.text;
  if (!recipe.text.empty() && recipe.text.back() != '\n') card << "\n";
  card << "```\n";
  return card.str();
}

}  // namespace

std::optional<std::string> resolve_chat_template(const Recipe& recipe) {
  if (!recipe.chat_template) return std::nullopt;
  const std::string& value = *recipe.chat_template;
  if (value == "chatml") return std::string(kChatMlTemplate);
  if (value.find("{{") != std::string::npos || value.find("{%") != std::string::npos) return value;
  throw ConfigError(recipe.file.string() + ": chat_template '" + value +
                    "' is neither a known template name (chatml) nor a Jinja template");
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError(errno_message("cannot create " + path.string()));
  out << text;
  out.flush();
  if (!out) throw IoError(errno_message("cannot write " + path.string()));
}

void write_folder_extras(const fs::path& dir, const Recipe& recipe, const MergePlan& plan,
                         bool copy_tokenizer) {
  write_text_file(dir / "config.json", plan.out_config.dump(2) + "\n");

  const auto chat_template = resolve_chat_template(recipe);
  if (copy_tokenizer && plan.tokenizer_model >= 0 && plan.models[plan.tokenizer_model]->gguf()) {
    // A GGUF source carries its vocabulary in metadata: rebuilt as tokenizer files.
    io::write_hf_tokenizer(*plan.models[plan.tokenizer_model]->gguf(), dir, chat_template);
  } else if (copy_tokenizer && plan.tokenizer_model >= 0) {
    for (const fs::path& src : plan.models[plan.tokenizer_model]->tokenizer_files()) {
      std::error_code ec;
      fs::copy_file(src, dir / src.filename(), fs::copy_options::overwrite_existing, ec);
      if (ec)
        throw IoError("cannot copy " + src.string() + " to " + dir.string() + ": " + ec.message());
    }
  }
  if (chat_template) {
    const fs::path config_path = dir / "tokenizer_config.json";
    nlohmann::json config = nlohmann::json::object();
    if (fs::exists(config_path)) {
      try {
        config = nlohmann::json::parse(read_text_file(config_path));
      } catch (const nlohmann::json::exception& e) {
        throw FormatError(config_path.string() + ": invalid JSON: " + e.what());
      }
    }
    config["chat_template"] = *chat_template;
    write_text_file(config_path, config.dump(2) + "\n");
  }
  write_text_file(dir / "README.md", model_card(recipe, plan));
  write_text_file(dir / "mergekit_config.yml", recipe.text);
}

}  // namespace shoal::merge
