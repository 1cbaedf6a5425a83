// Test helper for the `shoal evolve` tests: tiny random Llama folders (a base and two experts, as
// memory_merge_test_support.h writes them) with a byte-level tokenizer.json (token id = byte
// value, vocabulary 256, the mapping of GPT-2's byte-level BPE), and two small eval tasks with
// dev and test splits: a perplexity task (a continuous score, so every genome ranks differently)
// and a multiple-choice task (a second axis for the archive).
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "merge/memory_merge_test_support.h"
#include "shoal/rng.h"

namespace shoal::test {

// tokenizer.json + tokenizer_config.json: byte b is the token id b.
inline void write_byte_tokenizer(const std::filesystem::path& dir) {
  // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n.
  std::vector<int> bs, cs;
  for (int b = 0; b < 256; ++b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
      bs.push_back(b), cs.push_back(b);
    }
  }
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) bs.push_back(b), cs.push_back(256 + n++);
  }
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string utf8;
    const int c = cs[i];
    if (c < 0x80) {
      utf8 += char(c);
    } else {
      utf8 += char(0xC0 | (c >> 6));
      utf8 += char(0x80 | (c & 0x3F));
    }
    vocab[utf8] = bs[i];
  }
  const nlohmann::json byte_level = {{"type", "ByteLevel"},
                                     {"add_prefix_space", false},
                                     {"trim_offsets", true},
                                     {"use_regex", false}};
  const nlohmann::json tok = {{"version", "1.0"},
                              {"added_tokens", nlohmann::json::array()},
                              {"normalizer", nullptr},
                              {"pre_tokenizer", byte_level},
                              {"post_processor", nullptr},
                              {"decoder", byte_level},
                              {"model",
                               {{"type", "BPE"},
                                {"dropout", nullptr},
                                {"unk_token", nullptr},
                                {"continuing_subword_prefix", nullptr},
                                {"end_of_word_suffix", nullptr},
                                {"fuse_unk", false},
                                {"byte_fallback", false},
                                {"vocab", vocab},
                                {"merges", nlohmann::json::array()}}}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"add_bos_token": false, "add_eos_token": false})";
}

// base, a, b (experts of the base) with tokenizers; `layers` layers each.
inline void write_evolve_models(const std::filesystem::path& dir, int layers = 4) {
  TinyLlama shape;
  shape.layers = layers;
  shape.vocab = 256;
  write_tiny_llama(dir / "base", shape, 1, 0);
  write_tiny_llama(dir / "a", shape, 1, 2);
  write_tiny_llama(dir / "b", shape, 1, 3);
  for (const char* m : {"base", "a", "b"}) write_byte_tokenizer(dir / m);
}

// tasks/ppl.yml (perplexity) and tasks/mc.yml (multiple choice), dev and test splits of
// pseudo-random words (a fixed stream, so every run sees the same texts).
inline void write_evolve_tasks(const std::filesystem::path& dir) {
  const std::filesystem::path t = dir / "tasks";
  std::filesystem::create_directories(t);
  const CounterRng rng(11);
  uint64_t k = 0;
  const auto word = [&] {
    std::string w;
    const int len = 2 + int(rng.uniform(k++) * 4);
    for (int i = 0; i < len; ++i) w += char('a' + int(rng.uniform(k++) * 8));
    return w;
  };
  const auto text = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? " " : "") + word();
    return s;
  };
  for (const char* split : {"dev", "test"}) {
    std::ofstream ppl(t / (std::string("ppl_") + split + ".jsonl"));
    for (int i = 0; i < 4; ++i) ppl << nlohmann::json({{"text", text(10)}}).dump() << "\n";
    std::ofstream mc(t / (std::string("mc_") + split + ".jsonl"));
    for (int i = 0; i < 6; ++i) {
      mc << nlohmann::json({{"q", text(4)},
                            {"choices", {text(2), text(2), text(2)}},
                            {"label", int(rng.uniform(k++) * 3)}})
                .dump()
         << "\n";
    }
  }
  std::ofstream(t / "ppl.yml")
      << "kind: perplexity\ndataset: {dev: ppl_dev.jsonl, test: ppl_test.jsonl}\n"
         "text: \"{text}\"\n";
  std::ofstream(t / "mc.yml")
      << "kind: multiple_choice\ndataset: {dev: mc_dev.jsonl, test: mc_test.jsonl}\n"
         "prompt: \"{q}\"\nchoices: choices\ngold: label\n";
}

}  // namespace shoal::test
