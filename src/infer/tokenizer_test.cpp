// Tokenizer tests against independent references:
// - Python transformers' ids and decoded strings for 83 multilingual / emoji / code / whitespace
//   inputs, for GPT-2, TinyLlama (= the Llama-2 tokenizer) and Qwen2.5 (= the Qwen3 files'
//   vocabulary and merges) — shared/data/tokenizer-baselines, see shared/data/SOURCES.md;
// - llama.cpp's prompt ids for stories260K's 512-piece SentencePiece vocabulary, read here from
//   llama2.c's tok512.bin (an independent copy of the GGUF's vocabulary);
// - ids read straight from tokenizer.json's vocabulary, and hand-derived cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <thread>
#include <tuple>

#include "infer/tokenizer_test_support.h"
#include "io/test_support.h"
#include "shoal/error.h"
#include "shoal/gguf.h"
#include "shoal/tokenizer.h"

namespace shoal {
namespace {

using nlohmann::json;
using test::data_file;
using test::read_json_file;

const Tokenizer& gpt2() {
  static const Tokenizer t = Tokenizer::from_folder(data_file("gpt2-tokenizer"));
  return t;
}
const Tokenizer& llama2() {
  static const Tokenizer t = Tokenizer::from_folder(data_file("llama2-tokenizer"));
  return t;
}
const Tokenizer& qwen() {
  static const Tokenizer t = Tokenizer::from_folder(data_file("qwen3-tokenizer"));
  return t;
}

std::vector<int32_t> ids_of(const json& j) {
  return j.get<std::vector<int32_t>>();
}

// Every input of inputs.json through `tok`, compared with the baseline file's ids and decoded
// strings. Reports the number of exact matches as x/83.
void check_baseline(const Tokenizer& tok, const std::string& baseline_file) {
  const json inputs = read_json_file("tokenizer-baselines/inputs.json");
  const json baseline = read_json_file("tokenizer-baselines/" + baseline_file);
  std::map<std::string, std::string> text_of;
  for (const json& in : inputs) text_of[in.at("id")] = in.at("text");
  const json& entries = baseline.at("entries");
  ASSERT_EQ(entries.size(), 83u);
  int ids_ok = 0, decode_ok = 0, skip_ok = 0;
  for (const json& e : entries) {
    const std::string id = e.at("id");
    ASSERT_TRUE(text_of.count(id)) << id;
    const std::string& text = text_of[id];
    const std::vector<int32_t> expected = ids_of(e.at("input_ids"));
    const std::vector<int32_t> got = tok.encode(text);
    EXPECT_EQ(got, expected) << baseline_file << " " << id;
    ids_ok += got == expected;
    // Decode the baseline's ids, so a decoding check does not depend on encoding.
    const std::string with = tok.decode(expected, false);
    const std::string skip = tok.decode(expected, true);
    EXPECT_EQ(with, e.at("decoded_with_special").get<std::string>()) << baseline_file << " " << id;
    EXPECT_EQ(skip, e.at("decoded_skip_special").get<std::string>()) << baseline_file << " " << id;
    decode_ok += with == e.at("decoded_with_special").get<std::string>();
    skip_ok += skip == e.at("decoded_skip_special").get<std::string>();
  }
  std::printf("%s: ids %d/83, decoded_with_special %d/83, decoded_skip_special %d/83\n",
              baseline_file.c_str(), ids_ok, decode_ok, skip_ok);
}

TEST(TokenizerBaseline, Gpt2) {
  check_baseline(gpt2(), "gpt2_multilingual.json");
}
TEST(TokenizerBaseline, TinyLlama) {
  check_baseline(llama2(), "tinyllama_multilingual.json");
}
TEST(TokenizerBaseline, Qwen25) {
  check_baseline(qwen(), "qwen2_5_multilingual.json");
}

// ---- Special tokens, BOS/EOS ------------------------------------------------------------------

TEST(Tokenizer, SpecialIdsFromConfig) {
  // GPT-2: <|endoftext|> is BOS and EOS; the ByteLevel post-processor adds nothing.
  EXPECT_EQ(gpt2().bos_id(), 50256);
  EXPECT_EQ(gpt2().eos_id(), 50256);
  EXPECT_FALSE(gpt2().adds_bos());
  EXPECT_EQ(gpt2().vocab_size(), 50257u);
  // Llama-2: <s> = 1 added in front (add_bos_token), </s> = 2.
  EXPECT_EQ(llama2().bos_id(), 1);
  EXPECT_EQ(llama2().eos_id(), 2);
  EXPECT_TRUE(llama2().adds_bos());
  EXPECT_EQ(llama2().encode("").size(), 1u);
  EXPECT_TRUE(llama2().encode("", false).empty());
  // Qwen3 (instruct config): no BOS; EOS <|im_end|>.
  EXPECT_EQ(qwen().bos_id(), -1);
  EXPECT_EQ(qwen().eos_id(), 151645);
  EXPECT_FALSE(qwen().adds_bos());
  EXPECT_TRUE(qwen().is_special(151644));
  EXPECT_FALSE(qwen().is_special(151667));  // <think> is added but not special
  EXPECT_FALSE(qwen().is_special(100));
  EXPECT_EQ(qwen().stop_ids(), std::vector<int32_t>{151645});
}

TEST(Tokenizer, AddedTokensSplitTheText) {
  // Expected ids read from tokenizer.json itself: "user", "Hi" and "Ċ" (byte-level '\n') are
  // vocabulary entries, and the markers are added tokens.
  const json tj = read_json_file("qwen3-tokenizer/tokenizer.json");
  const json& vocab = tj.at("model").at("vocab");
  std::map<std::string, int32_t> added;
  for (const json& a : tj.at("added_tokens")) added[a.at("content")] = a.at("id");
  const std::vector<int32_t> expected = {added.at("<|im_start|>"), vocab.at("user"),
                                         vocab.at("\xC4\x8A"),  // "Ċ" = byte 0x0A
                                         vocab.at("Hi"), added.at("<|im_end|>")};
  EXPECT_EQ(qwen().encode("<|im_start|>user\nHi<|im_end|>"), expected);
  // Non-special added tokens (<think>) match too; with parse_special = false only they do.
  const std::vector<int32_t> think = {added.at("<think>"), vocab.at("Hi"), added.at("</think>")};
  EXPECT_EQ(qwen().encode("<think>Hi</think>", true, false), think);
  const std::vector<int32_t> plain = qwen().encode("<|im_end|>", true, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), added.at("<|im_end|>")), 0);
  EXPECT_EQ(qwen().decode(plain), "<|im_end|>");
  // Decoding with and without special tokens.
  EXPECT_EQ(qwen().decode(expected), "<|im_start|>user\nHi<|im_end|>");
  EXPECT_EQ(qwen().decode(expected, true), "user\nHi");
  EXPECT_EQ(qwen().token_id("<|im_end|>"), added.at("<|im_end|>"));
  EXPECT_EQ(qwen().token_id("Hi"), vocab.at("Hi").get<int32_t>());
  EXPECT_FALSE(qwen().token_id("no such piece").has_value());
}

TEST(Tokenizer, LlamaSpecialTokensInText) {
  // Llama-2's added tokens are `normalized`: HF matches them in the normalized text, with their
  // content normalized too ("▁</s>"), so "</s>" after a space is the EOS token.
  const std::vector<int32_t> ids = llama2().encode("Hi </s>");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(llama2().decode(ids, true), "Hi");
}

TEST(Tokenizer, TokenTextForStreaming) {
  // GPT-2 "Ġthe" -> " the"; Llama "▁the" -> " the" (no stripping mid-stream); <0x0A> -> "\n".
  const auto gid = gpt2().token_id("\xC4\xA0the");
  ASSERT_TRUE(gid.has_value());
  EXPECT_EQ(gpt2().token_text(*gid), " the");
  const auto lid = llama2().token_id("\xE2\x96\x81the");
  ASSERT_TRUE(lid.has_value());
  EXPECT_EQ(llama2().token_text(*lid), " the");
  EXPECT_EQ(llama2().token_text(*llama2().token_id("<0x0A>")), "\n");
  EXPECT_EQ(llama2().token_text(1), "<s>");
  // A 3-byte character split over byte tokens: each token gives its raw byte.
  const std::vector<int32_t> euro = llama2().encode("\xE2\x82\xAC", false);  // U+20AC
  std::string joined;
  for (int32_t id : euro) joined += llama2().token_text(id);
  EXPECT_EQ(joined, " \xE2\x82\xAC");
  EXPECT_EQ(gpt2().token_text(-1), "");
  EXPECT_EQ(gpt2().token_text(1 << 30), "");
}

TEST(Tokenizer, DecodeIncompleteUtf8) {
  // Byte-level: the first two bytes of "€" decode to one U+FFFD (maximal subpart), as Python's
  // errors="replace" does.
  const std::vector<int32_t> bytes = gpt2().encode("\xE2\x82\xAC");
  std::vector<int32_t> ids;
  for (const char* piece : {"\xC3\xA2", "\xC4\xA2"}) {  // byte-level chars of 0xE2 and 0x82
    const auto id = gpt2().token_id(piece);
    ASSERT_TRUE(id.has_value());
    ids.push_back(*id);
  }
  EXPECT_EQ(gpt2().decode(ids), "\xEF\xBF\xBD");
  // Byte fallback: bytes that are not valid text become one U+FFFD each (HF's ByteFallback).
  const std::vector<int32_t> two = {*llama2().token_id("<0xE2>"), *llama2().token_id("<0x82>")};
  EXPECT_EQ(llama2().decode(two), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(gpt2().decode(bytes), "\xE2\x82\xAC");
}

TEST(Tokenizer, InvalidUtf8InputIsReplaced) {
  EXPECT_EQ(gpt2().encode("a\xFF"
                          "b"),
            gpt2().encode("a\xEF\xBF\xBD"
                          "b"));
  EXPECT_EQ(qwen().encode("\xE2\x82"), qwen().encode("\xEF\xBF\xBD"));
}

TEST(Tokenizer, ConcurrentEncodeMatchesSerial) {
  const json inputs = read_json_file("tokenizer-baselines/inputs.json");
  std::vector<std::string> texts;
  for (const json& in : inputs) texts.push_back(in.at("text"));
  std::vector<std::vector<int32_t>> serial;
  for (const std::string& t : texts) serial.push_back(qwen().encode(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i)
          mismatches += qwen().encode(texts[i]) != serial[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- GGUF "gpt2" vocabularies -----------------------------------------------------------------

// tokenizer.json's vocabulary and merges as a GGUF converter writes them: tokens by id, merges
// as "left right", special added tokens as control (3), other added tokens as user-defined (4).
TokenizerVocab gguf_style_vocab(const std::string& folder, const std::string& pre) {
  const json tj = read_json_file(folder + "/tokenizer.json");
  TokenizerVocab v;
  v.model = "gpt2";
  v.pre = pre;
  v.add_bos = false;
  size_t n = 0;
  for (const auto& [piece, id] : tj.at("model").at("vocab").items())
    n = std::max<size_t>(n, id.get<size_t>() + 1);
  for (const json& a : tj.at("added_tokens")) n = std::max<size_t>(n, a.at("id").get<size_t>() + 1);
  v.tokens.resize(n);
  v.token_types.assign(n, 1);
  for (const auto& [piece, id] : tj.at("model").at("vocab").items())
    v.tokens[id.get<size_t>()] = piece;
  for (const json& a : tj.at("added_tokens")) {
    v.tokens[a.at("id").get<size_t>()] = a.at("content");
    v.token_types[a.at("id").get<size_t>()] = a.at("special").get<bool>() ? 3 : 4;
  }
  for (const json& m : tj.at("model").at("merges")) {
    v.merges.push_back(m.is_string() ? m.get<std::string>()
                                     : m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  return v;
}

TEST(TokenizerGgufBpe, Gpt2AndQwen2PreTokenizersMatchTheBaselines) {
  // The same baselines as above, through the GGUF path (tokenizer.ggml.pre names the pattern).
  // Qwen's NFC normalizer is absent here, as in llama.cpp; the inputs are NFC already.
  for (const auto& [folder, pre, baseline] :
       {std::tuple{"gpt2-tokenizer", "gpt-2", "gpt2_multilingual.json"},
        std::tuple{"qwen3-tokenizer", "qwen2", "qwen2_5_multilingual.json"}}) {
    const Tokenizer tok = Tokenizer::from_vocab(gguf_style_vocab(folder, pre));
    const json inputs = read_json_file("tokenizer-baselines/inputs.json");
    const json entries =
        read_json_file(std::string("tokenizer-baselines/") + baseline).at("entries");
    ASSERT_EQ(entries.size(), inputs.size());
    int ok = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      ASSERT_EQ(inputs[i].at("id"), entries[i].at("id"));
      const auto expected = ids_of(entries[i].at("input_ids"));
      const auto got = tok.encode(inputs[i].at("text").get<std::string>());
      EXPECT_EQ(got, expected) << pre << " " << inputs[i].at("id");
      ok += got == expected;
      EXPECT_EQ(tok.decode(expected), entries[i].at("decoded_with_special").get<std::string>());
    }
    std::printf("GGUF-style %s: ids %d/83\n", pre, ok);
  }
  TokenizerVocab v = gguf_style_vocab("gpt2-tokenizer", "falcon");
  try {
    Tokenizer::from_vocab(v);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre: unsupported 'falcon'"),
              std::string::npos)
        << e.what();
  }
}

// ---- SentencePiece-style vocabulary (score merges) ------------------------------------------

// llama2.c's tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 length,
// bytes. Its pieces write U+2581 as ' ' and spell <s>/</s> as "\n<s>\n"/"\n</s>\n"; ids 3..258
// are the <0xXX> byte pieces (SentencePiece's byte_fallback layout).
TokenizerVocab read_llama2c_vocab(const std::filesystem::path& path) {
  const std::string bytes = test::read_bytes(path);
  TokenizerVocab v;
  v.source = path.string();
  size_t pos = 4;
  while (pos + 8 <= bytes.size()) {
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + pos, 4);
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    pos += 8;
    std::string piece = bytes.substr(pos, len);
    pos += len;
    for (size_t i = 0; (i = piece.find(' ', i)) != std::string::npos;) {
      piece.replace(i, 1, "\xE2\x96\x81");
    }
    v.tokens.push_back(piece);
    v.scores.push_back(score);
  }
  v.tokens[1] = "<s>";
  v.tokens[2] = "</s>";
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types[0] = 2;
  v.token_types[1] = v.token_types[2] = 3;
  for (int i = 3; i < 259; ++i) v.token_types[i] = 6;
  v.model = "llama";
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  return v;
}

// The prompts of llamacpp_oracle.jsonl's generate lines, in order (SOURCES.md).
const char* const kOraclePrompts[] = {"", "Once upon a time", "Lily and Tom went to the park",
                                      "The cat sat on the"};

std::vector<std::vector<int32_t>> oracle_prompt_ids() {
  std::vector<std::vector<int32_t>> out;
  std::istringstream lines(test::read_bytes(data_file("stories260k/llamacpp_oracle.jsonl")));
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    if (j.contains("generated_ids")) out.push_back(ids_of(j.at("prompt_ids")));
  }
  return out;
}

TEST(TokenizerSpm, MatchesLlamaCppOnStories260k) {
  const Tokenizer tok =
      Tokenizer::from_vocab(read_llama2c_vocab(data_file("stories260k/tok512.bin")));
  const auto expected = oracle_prompt_ids();
  ASSERT_EQ(expected.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(tok.encode(kOraclePrompts[i]), expected[i]) << kOraclePrompts[i];
    EXPECT_EQ(tok.decode(expected[i], true), kOraclePrompts[i]);
  }
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_TRUE(tok.adds_bos());
}

TEST(TokenizerSpm, GgufVocabularyMatchesLlamaCpp) {
  // The same vocabulary read from the GGUF file's tokenizer.ggml.* keys; no add_bos_token key,
  // so BOS is added (llama.cpp's default for "llama" vocabularies).
  const GgufFile gguf = GgufFile::open(data_file("stories260k/stories260K.gguf"));
  const Tokenizer tok = Tokenizer::from_gguf(gguf);
  EXPECT_EQ(tok.vocab_size(), 512u);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.chat_template_kind(), ChatTemplateKind::kNone);
  const TokenizerVocab bin = read_llama2c_vocab(data_file("stories260k/tok512.bin"));
  for (int32_t id = 0; id < 512; ++id) EXPECT_EQ(tok.token_piece(id), bin.tokens[id]) << id;
  const auto expected = oracle_prompt_ids();
  ASSERT_EQ(expected.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(tok.encode(kOraclePrompts[i]), expected[i]) << kOraclePrompts[i];
  }
  // The generated ids decode to the text llama.cpp gave for them.
  std::istringstream lines(test::read_bytes(data_file("stories260k/llamacpp_oracle.jsonl")));
  int checked = 0;
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    if (!j.contains("generated_ids")) continue;
    // llama.cpp drops the space of the first piece, as the Strip decoder step does.
    EXPECT_EQ(tok.decode(ids_of(j.at("generated_ids"))), j.at("text").get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(TokenizerSpm, ScoreMergesAndByteFallback) {
  // A hand-made vocabulary: "ab" scores higher than "bc", so "abc" -> [ab, c]; with "bc" higher
  // it is [a, bc]. "é" (no piece) falls back to its two UTF-8 bytes.
  TokenizerVocab v;
  v.model = "llama";
  v.add_bos = false;
  v.add_space_prefix = false;
  v.tokens = {"<unk>", "a", "b", "c", "ab", "bc", "<0xC3>", "<0xA9>"};
  v.scores = {0, -10, -10, -10, -1, -2, 0, 0};
  v.token_types = {2, 1, 1, 1, 1, 1, 6, 6};
  v.unk_id = 0;
  EXPECT_EQ(Tokenizer::from_vocab(v).encode("abc"), (std::vector<int32_t>{4, 3}));
  v.scores[5] = 0;
  const Tokenizer t = Tokenizer::from_vocab(v);
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(t.encode("\xC3\xA9"), (std::vector<int32_t>{6, 7}));
  EXPECT_EQ(t.decode(std::vector<int32_t>{6, 7}), "\xC3\xA9");
  EXPECT_EQ(t.encode("x"), (std::vector<int32_t>{0}));  // no piece, no byte piece: unk
}

TEST(TokenizerSpm, SpacePrefixAfterSpecialTokens) {
  // llama.cpp puts the dummy-prefix space before the text and after each special token.
  TokenizerVocab v;
  v.model = "llama";
  v.tokens = {"<unk>",
              "<s>",
              "</s>",
              "\xE2\x96\x81"
              "a",
              "a",
              "\xE2\x96\x81"};
  v.scores = {0, 0, 0, -1, -2, -3};
  v.token_types = {2, 3, 3, 1, 1, 1};
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  const Tokenizer t = Tokenizer::from_vocab(v);
  EXPECT_EQ(t.encode("a</s>a"), (std::vector<int32_t>{1, 3, 2, 3}));
  // Not parsed: "</s>" is text; its characters have no pieces and no byte pieces -> unk each.
  EXPECT_EQ(t.encode("a</s>a", true, false), (std::vector<int32_t>{1, 3, 0, 0, 0, 0, 4}));
  // Only the very first space is stripped when decoding.
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 3, 2, 3}, true), "a a");
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 3, 2, 3}), "<s> a</s> a");
}

TEST(TokenizerSpm, PiecesAcrossSpacesKeepTheTextWhole) {
  // SentencePiece-style text is cut into words before each "▁" only when no piece holds "▁"
  // after another character. Here "a▁b" does: "a b" -> "▁a▁b" -> merges "a ▁" then "a▁ b" ->
  // [▁, a▁b]; cutting at the second "▁" would give [▁, a, ▁, b].
  test::TempDir dir;
  const std::string sp = "\xE2\x96\x81";
  const json tj = {{"normalizer",
                    {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", sp}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}}}}},
                   {"model",
                    {{"type", "BPE"},
                     {"vocab", {{sp, 0}, {"a", 1}, {"b", 2}, {"a" + sp, 3}, {"a" + sp + "b", 4}}},
                     {"merges", {"a " + sp, "a" + sp + " b"}}}}};
  test::write_file(dir / "tokenizer.json", tj.dump());
  const Tokenizer t = Tokenizer::from_folder(dir.path());
  EXPECT_EQ(t.encode("a b"), (std::vector<int32_t>{0, 4}));
  // Without a decoder HF joins the pieces with spaces.
  EXPECT_EQ(t.decode(std::vector<int32_t>{0, 4}), sp + " a" + sp + "b");
}

// ---- Errors -----------------------------------------------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerErrors, OneLineNamingFileAndKey) {
  test::TempDir dir;
  const auto write = [&](const json& tj) { test::write_file(dir / "tokenizer.json", tj.dump()); };
  json base = {
      {"model",
       {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
  write(base);
  const Tokenizer ok = Tokenizer::from_folder(dir.path());
  EXPECT_EQ(ok.encode("ab"), std::vector<int32_t>{2});

  json t = base;
  t["model"]["type"] = "Unigram";
  write(t);
  std::string msg = error_of([&] { Tokenizer::from_folder(dir.path()); });
  EXPECT_NE(msg.find("tokenizer.json: model.type: unsupported 'Unigram' (shoal supports BPE)"),
            std::string::npos)
      << msg;

  t = base;
  t["pre_tokenizer"] = {{"type", "Whitespace"}};
  write(t);
  msg = error_of([&] { Tokenizer::from_folder(dir.path()); });
  EXPECT_NE(msg.find("pre_tokenizer.type: unsupported pre-tokenizer 'Whitespace' (shoal supports "
                     "Sequence, ByteLevel, Split, Metaspace, Digits)"),
            std::string::npos)
      << msg;

  t = base;
  t["model"]["merges"] = {"a c"};
  write(t);
  msg = error_of([&] { Tokenizer::from_folder(dir.path()); });
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;

  t = base;
  t["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  write(t);
  msg = error_of([&] { Tokenizer::from_folder(dir.path()); });
  EXPECT_NE(msg.find("pre_tokenizer.pattern: regex does not compile"), std::string::npos) << msg;

  write(base);
  test::write_file(dir / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  msg = error_of([&] { Tokenizer::from_folder(dir.path()); });
  EXPECT_NE(msg.find("tokenizer_config.json: bos_token: '<nope>' is not a token"),
            std::string::npos)
      << msg;

  std::filesystem::remove(dir / "tokenizer.json");
  msg = error_of([&] { Tokenizer::from_folder(dir.path()); });
  EXPECT_NE(msg.find("no tokenizer.json"), std::string::npos) << msg;
  for (const std::string& m : {msg}) EXPECT_EQ(m.find('\n'), std::string::npos);

  TokenizerVocab v;
  v.model = "bert";
  v.tokens = {"a"};
  msg = error_of([&] { Tokenizer::from_vocab(v); });
  EXPECT_NE(msg.find("tokenizer.ggml.model: unsupported 'bert' (shoal supports llama, gpt2)"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace shoal
