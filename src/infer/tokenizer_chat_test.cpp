// Chat templates: each expected string below was written by reading the template it names by
// hand (following Jinja's rules as HF applies them: trim_blocks, lstrip_blocks), not by running
// shoal. The templates for Llama-3, Llama-2, Mistral and Zephyr are quoted from the published
// model repositories' tokenizer_config.json files; Qwen3's is the one in shared/data.
#include <gtest/gtest.h>

#include "infer/tokenizer_test_support.h"
#include "shoal/error.h"
#include "shoal/tokenizer.h"

namespace shoal {
namespace {

using test::data_file;

const Tokenizer& qwen3() {
  static const Tokenizer t = Tokenizer::from_folder(data_file("qwen3-tokenizer"));
  return t;
}

// A minimal SentencePiece vocabulary whose BOS/EOS pieces are `bos` / `eos`, carrying `tmpl`.
Tokenizer with_template(const std::string& tmpl, const std::string& bos = "<s>",
                        const std::string& eos = "</s>") {
  TokenizerVocab v;
  v.model = "llama";
  v.tokens = {"<unk>", bos, eos, "<|eot_id|>"};
  v.scores = {0, 0, 0, 0};
  v.token_types = {2, 3, 3, 3};
  v.bos_id = 1;
  v.eos_id = 2;
  v.chat_template = tmpl;
  v.source = "test.gguf";
  return Tokenizer::from_vocab(v);
}

std::vector<ChatMessage> conv(std::initializer_list<std::pair<const char*, const char*>> turns) {
  std::vector<ChatMessage> out;
  for (auto [role, content] : turns) out.push_back({role, content});
  return out;
}

TEST(ChatTemplate, Qwen3ChatMl) {
  ASSERT_EQ(qwen3().chat_template_kind(), ChatTemplateKind::kChatMl);
  // No tools; messages[0] is the system message -> '<|im_start|>system\n' + content +
  // '<|im_end|>\n'. The user turn -> '<|im_start|>user\n' + content + '<|im_end|>' + '\n'.
  // add_generation_prompt -> '<|im_start|>assistant\n' (enable_thinking is undefined, so no
  // empty think block).
  const auto two = conv({{"system", "You are terse."}, {"user", "What is 2+2?"}});
  EXPECT_EQ(qwen3().apply_chat_template(two, true),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(qwen3().apply_chat_template(two, false),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
  // The last message is an assistant reply after the last user query (loop.last): it is written
  // '<|im_start|>assistant\n<think>\n' + '' + '\n</think>\n\n' + content, then '<|im_end|>\n'.
  EXPECT_EQ(qwen3().apply_chat_template(conv({{"user", "Hi"}, {"assistant", "Hello!"}}), false),
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n");
  // An earlier reply (before the last user query) keeps only the text after </think>.
  EXPECT_EQ(
      qwen3().apply_chat_template(
          conv({{"user", "A"}, {"assistant", "<think>\nhmm\n</think>\n\nB"}, {"user", "C"}}), true),
      "<|im_start|>user\nA<|im_end|>\n"
      "<|im_start|>assistant\nB<|im_end|>\n"
      "<|im_start|>user\nC<|im_end|>\n"
      "<|im_start|>assistant\n");
  // <|im_end|> ends a turn and so a generation.
  const auto stops = qwen3().stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), *qwen3().token_id("<|im_end|>")), stops.end());
  // The rendered text tokenizes with the markers as single tokens.
  const auto ids = qwen3().encode(qwen3().apply_chat_template(two, true), false);
  EXPECT_EQ(ids.front(), *qwen3().token_id("<|im_start|>"));
}

TEST(ChatTemplate, Qwen25DefaultSystemPrompt) {
  // Qwen2.5-Instruct's template, the branch without tools: with no system message it writes a
  // default one.
  const Tokenizer t = with_template(
      "{%- if tools %}...{%- else %}\n"
      "    {%- if messages[0]['role'] == 'system' %}\n"
      "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
      "    {%- else %}\n"
      "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
      "helpful assistant.<|im_end|>\\n' }}\n"
      "    {%- endif %}\n{%- endif %}\n"
      "{%- for message in messages %}...{%- endfor %}\n"
      "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n");
  EXPECT_EQ(t.apply_chat_template(conv({{"user", "Hi"}})),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.apply_chat_template(conv({{"system", "S"}, {"user", "Hi"}})),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3) {
  // Meta-Llama-3-8B-Instruct. `message['content'] | trim` binds before '+', so only the content
  // is trimmed; bos_token is written before the first turn.
  const Tokenizer t = with_template(
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
      "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
      "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
      "<|begin_of_text|>", "<|end_of_text|>");
  ASSERT_EQ(t.chat_template_kind(), ChatTemplateKind::kLlama3);
  EXPECT_EQ(t.apply_chat_template(conv({{"system", "Be brief. "}, {"user", " Hi\n"}})),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const auto stops = t.stop_ids();
  EXPECT_EQ(stops, (std::vector<int32_t>{2, 3}));  // EOS and <|eot_id|>
}

TEST(ChatTemplate, Llama31SystemTurnAlwaysFirst) {
  // Llama-3.1-Instruct, the lines that apply without tools: date_string defaults to
  // "26 Jul 2024"; a system turn with the knowledge cutoff and date always comes first.
  const Tokenizer t = with_template(
      "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- set date_string = "
      "\"26 Jul 2024\" %}\n{%- endif %}\n"
      "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
      "messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n"
      "    {%- set system_message = \"\" %}\n{%- endif %}\n"
      "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
      "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
      "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{{- system_message }}\n"
      "{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n"
      "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
      "message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n"
      "{%- if add_generation_prompt %}\n    {{- "
      "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
      "<|begin_of_text|>", "<|end_of_text|>");
  EXPECT_EQ(t.apply_chat_template(conv({{"user", "Hi"}})),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

const char* const kLlama2Template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
    "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
    "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
    "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == "
    "0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
    "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() "
    "+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
    "eos_token }}{% endif %}{% endfor %}";

TEST(ChatTemplate, Llama2) {
  const Tokenizer t = with_template(kLlama2Template);
  ASSERT_EQ(t.chat_template_kind(), ChatTemplateKind::kLlama2);
  EXPECT_EQ(t.apply_chat_template(conv(
                {{"system", "SYS"}, {"user", "Hi "}, {"assistant", "Hello"}, {"user", "Again"}})),
            "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Again [/INST]");
  try {
    t.apply_chat_template(conv({{"user", "a"}, {"user", "b"}}));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("alternating"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, Mistral) {
  // Mistral-7B-Instruct-v0.1.
  const Tokenizer t = with_template(
      "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
      "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
      "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
      "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
      "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
      "roles are supported!') }}{% endif %}{% endfor %}");
  ASSERT_EQ(t.chat_template_kind(), ChatTemplateKind::kMistral);
  EXPECT_EQ(
      t.apply_chat_template(conv({{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Again"}})),
      "<s>[INST] Hi [/INST]Hello</s>[INST] Again [/INST]");
}

TEST(ChatTemplate, ZephyrAsTinyLlamaChat) {
  // TinyLlama-1.1B-Chat-v1.0. trim_blocks drops the newline after each {% ... %}; the newline
  // after each {{ ... }} stays.
  const Tokenizer t = with_template(
      "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
      "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
      "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
      "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
      "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
      "{% endfor %}");
  ASSERT_EQ(t.chat_template_kind(), ChatTemplateKind::kZephyr);
  EXPECT_EQ(t.apply_chat_template(conv({{"system", "SYS"}, {"user", "Hi"}})),
            "<|system|>\nSYS</s>\n<|user|>\nHi</s>\n<|assistant|>\n");
}

TEST(ChatTemplate, UnknownOrMissingIsAClearError) {
  const Tokenizer gemma = with_template(
      "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + "
      "'\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}");
  EXPECT_EQ(gemma.chat_template_kind(), ChatTemplateKind::kUnknown);
  try {
    gemma.apply_chat_template(conv({{"user", "Hi"}}));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("test.gguf: chat_template is not one shoal recognises", 0), 0u) << msg;
    EXPECT_NE(msg.find("--no-chat-template"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  const Tokenizer none = with_template("");
  EXPECT_EQ(none.chat_template_kind(), ChatTemplateKind::kNone);
  EXPECT_THROW(none.apply_chat_template(conv({{"user", "Hi"}})), ConfigError);
  // GPT-2's folder has no template: the error names its tokenizer_config.json.
  const Tokenizer gpt2 = Tokenizer::from_folder(data_file("gpt2-tokenizer"));
  try {
    gpt2.apply_chat_template(conv({{"user", "Hi"}}));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: no chat_template"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace shoal
