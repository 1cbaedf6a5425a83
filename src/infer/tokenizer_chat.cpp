// Chat templates. shoal does not interpret Jinja: it recognises the common templates by a
// distinctive piece of their text and renders the same output in C++, following each template's
// own rules for the system message, whitespace trimming and the BOS/EOS text. The renderings were
// derived by reading the templates (Qwen2.5 / Qwen3 ChatML, Llama-3 and 3.1, Llama-2, Mistral
// Instruct, Zephyr as used by TinyLlama-Chat); Jinja's trim filter and Python's strip() both
// drop surrounding whitespace, here ASCII whitespace.
#include "infer/tokenizer_impl.h"
#include "shoal/error.h"

namespace shoal {

const char* chat_template_kind_name(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kNone:
      return "none";
    case ChatTemplateKind::kUnknown:
      return "unknown";
    case ChatTemplateKind::kChatMl:
      return "chatml";
    case ChatTemplateKind::kLlama3:
      return "llama3";
    case ChatTemplateKind::kLlama2:
      return "llama2";
    case ChatTemplateKind::kMistral:
      return "mistral";
    case ChatTemplateKind::kZephyr:
      return "zephyr";
  }
  return "unknown";
}

namespace infer {

namespace {

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Concatenation by appending (GCC 12 warns falsely about `"literal" + std::string`).
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  ((out += parts), ...);
  return out;
}

constexpr std::string_view kSpace = " \t\n\r\v\f";

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}
std::string_view lstrip_newlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
std::string_view rstrip_newlines(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

// A Jinja string literal's text with its \n escapes resolved.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The text a template writes after `marker` inside one string literal, up to `end` (e.g.
// Qwen2.5's default system prompt after '<|im_start|>system\n'); nullopt when the literal ends
// right after the marker (the template concatenates a variable there instead).
std::optional<std::string> literal_after(std::string_view tmpl, std::string_view marker,
                                         std::string_view end) {
  for (size_t pos = tmpl.find(marker); pos != std::string_view::npos;
       pos = tmpl.find(marker, pos + 1)) {
    const size_t start = pos + marker.size();
    if (start >= tmpl.size() || tmpl[start] == '\'' || tmpl[start] == '"') continue;
    const size_t stop = tmpl.find(end, start);
    const size_t quote = tmpl.find_first_of("'\"", start);
    if (stop == std::string_view::npos || (quote != std::string_view::npos && quote < stop)) {
      continue;
    }
    return unescape(tmpl.substr(start, stop - start));
  }
  return std::nullopt;
}

[[noreturn]] void unsupported(const Tokenizer::Impl& im, const std::string& what) {
  throw ConfigError(im.chat_source + ": " + what +
                    "; pass --no-chat-template to send the prompt as plain text");
}

std::string render_chatml(const Tokenizer::Impl& im, std::span<const ChatMessage> msgs,
                          bool add_generation_prompt) {
  const std::string_view tmpl = im.chat_template;
  // Qwen3 keeps the reasoning of the latest reply only, in a <think> block.
  const bool qwen3_thinking = contains(tmpl, "</think>") && contains(tmpl, "reasoning_content");
  std::string out;
  size_t first = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    out += cat("<|im_start|>system\n", msgs[0].content, "<|im_end|>\n");
    first = 1;
  } else if (auto fallback = literal_after(tmpl, "<|im_start|>system\\n", "<|im_end|>")) {
    out += cat("<|im_start|>system\n", *fallback, "<|im_end|>\n");  // Qwen2.5's default prompt
  }
  size_t last_query = msgs.empty() ? 0 : msgs.size() - 1;
  for (size_t i = msgs.size(); i-- > 0;) {
    if (msgs[i].role == "user") {
      last_query = i;
      break;
    }
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role != "assistant" || !qwen3_thinking) {
      out += cat("<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      continue;
    }
    std::string_view content = m.content;
    std::string_view reasoning;
    if (const size_t close = content.find("</think>"); close != std::string_view::npos) {
      std::string_view before = rstrip_newlines(content.substr(0, close));
      if (const size_t open = before.rfind("<think>"); open != std::string_view::npos) {
        before = before.substr(open + 7);
      }
      reasoning = lstrip_newlines(before);
      content = lstrip_newlines(content.substr(content.rfind("</think>") + 8));
    }
    out += "<|im_start|>assistant\n";
    if (i > last_query && (i + 1 == msgs.size() || !reasoning.empty())) {
      std::string_view r = lstrip_newlines(rstrip_newlines(reasoning));
      out += cat("<think>\n", r, "\n</think>\n\n", lstrip_newlines(content));
    } else {
      out += content;
    }
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(const Tokenizer::Impl& im, std::span<const ChatMessage> msgs,
                          bool add_generation_prompt) {
  const std::string_view tmpl = im.chat_template;
  const auto header = [](std::string_view role) {
    return cat("<|start_header_id|>", role, "<|end_header_id|>\n\n");
  };
  std::string out = contains(tmpl, "bos_token") ? im.bos_text : "";
  size_t first = 0;
  if (contains(tmpl, "Cutting Knowledge Date")) {
    // Llama-3.1 and later: a system turn always comes first, with the knowledge-cutoff and date
    // lines before the system message. The date is the template's default date_string.
    std::string_view system;
    if (!msgs.empty() && msgs[0].role == "system") {
      system = trim(msgs[0].content);
      first = 1;
    }
    const std::string cutoff =
        literal_after(tmpl, "Cutting Knowledge Date: ", "\\n").value_or("December 2023");
    const std::string date =
        literal_after(tmpl, "set date_string = \"", "\"").value_or("26 Jul 2024");
    out += cat(header("system"), "Cutting Knowledge Date: ", cutoff, "\nToday Date: ", date, "\n\n",
               system, "<|eot_id|>");
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    out += cat(header(msgs[i].role), trim(msgs[i].content), "<|eot_id|>");
  }
  if (add_generation_prompt) out += header("assistant");
  return out;
}

// Llama-2 and Mistral: [INST] turns; user and assistant must alternate, user first.
std::string render_inst(const Tokenizer::Impl& im, std::span<const ChatMessage> msgs, bool llama2) {
  std::string_view system;
  size_t first = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    system = msgs[0].content;
    first = 1;
  }
  const std::string_view tmpl = im.chat_template;
  const bool space_before_close = contains(tmpl, "' [/INST]'") || contains(tmpl, "\" [/INST]\"");
  // Llama-2 writes BOS before every [INST]; Mistral's template once, at the start.
  std::string out = !llama2 && contains(tmpl, "bos_token") ? im.bos_text : "";
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    const bool want_user = (i - first) % 2 == 0;
    if (m.role != (want_user ? "user" : "assistant")) {
      unsupported(im, cat("this [INST] template needs user and assistant turns alternating, "
                          "user first (message ",
                          std::to_string(i), " is '", m.role, "')"));
    }
    std::string content = m.content;
    if (i == first && !system.empty()) {
      content = llama2 ? cat("<<SYS>>\n", system, "\n<</SYS>>\n\n", content)
                       : cat(system, "\n\n", content);
    }
    if (llama2) {
      out += m.role == "user" ? cat(im.bos_text, "[INST] ", trim(content), " [/INST]")
                              : cat(" ", trim(content), " ", im.eos_text);
    } else {
      out += m.role == "user" ? cat("[INST] ", content, space_before_close ? " [/INST]" : "[/INST]")
                              : cat(content, im.eos_text);
    }
  }
  return out;
}

std::string render_zephyr(const Tokenizer::Impl& im, std::span<const ChatMessage> msgs,
                          bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : msgs) out += cat("<|", m.role, "|>\n", m.content, im.eos_text, "\n");
  if (add_generation_prompt) out += "<|assistant|>\n";
  return out;
}

}  // namespace

ChatTemplateKind detect_chat_template(std::string_view tmpl) {
  if (contains(tmpl, "<|im_start|>")) return ChatTemplateKind::kChatMl;
  if (contains(tmpl, "<|start_header_id|>")) return ChatTemplateKind::kLlama3;
  if (contains(tmpl, "[INST]")) {
    return contains(tmpl, "<<SYS>>") ? ChatTemplateKind::kLlama2 : ChatTemplateKind::kMistral;
  }
  if (contains(tmpl, "<|user|>") && contains(tmpl, "<|assistant|>")) {
    return ChatTemplateKind::kZephyr;
  }
  return ChatTemplateKind::kUnknown;
}

std::string render_chat(const Tokenizer::Impl& im, std::span<const ChatMessage> messages,
                        bool add_generation_prompt) {
  switch (im.chat_kind) {
    case ChatTemplateKind::kNone:
      unsupported(im, "no chat_template");
    case ChatTemplateKind::kUnknown:
      unsupported(im,
                  "chat_template is not one shoal recognises (ChatML, Llama-3, "
                  "Llama-2/Mistral [INST], Zephyr)");
    case ChatTemplateKind::kChatMl:
      return render_chatml(im, messages, add_generation_prompt);
    case ChatTemplateKind::kLlama3:
      return render_llama3(im, messages, add_generation_prompt);
    case ChatTemplateKind::kLlama2:
      return render_inst(im, messages, true);
    case ChatTemplateKind::kMistral:
      return render_inst(im, messages, false);
    case ChatTemplateKind::kZephyr:
      return render_zephyr(im, messages, add_generation_prompt);
  }
  unsupported(im, "chat_template kind not handled");
}

}  // namespace infer
}  // namespace shoal
