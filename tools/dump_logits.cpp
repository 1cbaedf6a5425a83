// shoal_dump_logits: runs the inference engine on token ids and writes what it computed as NumPy
// .npy files, so that tests (tests/test_forward.py) compare it with a PyTorch reference, the way
// llm.c's test_gpt2 checks states dumped from PyTorch. A developer tool that uses only the public
// API (shoal/model.h, shoal/sampling.h); not part of the `shoal` CLI.
//
//   shoal_dump_logits MODEL --ids 1,2,3 [--ids 4,5] --out logits.npy [--mode MODE]
//                     [--dump-layers DIR] [--prefill K] [--threads N] [--f32-weights]
//                     [--bf16-activations] [--max-batch-tokens N]
//   shoal_dump_logits MODEL --ids 1 --generate 200 [--temperature T --top-k K --top-p P --seed S]
//                     [--text]
//   shoal_dump_logits --path PATH.json --ids 1,2,3 --out logits.npy [the options above]
//
// --out: float32 [total tokens, vocab], the sequences' rows one after another; row i of a
// sequence holds the logits after its token i. A row the mode does not compute is NaN.
// Modes: batch (default; every sequence in one Model::logits call), decode (per sequence, a
// Session: prefill of the first --prefill tokens (default 1), then one append per token),
// batch-decode (all sequences as Sessions advanced together by Model::extend, one token each
// per step; rows before --prefill - 1 are NaN as in decode).
// --dump-layers DIR (batch mode): DIR/stage_<s>.npy, float32 [total tokens, hidden] for each
// LayerObserver stage s (0: embeddings, l + 1: after layer l, n_layers + 1: after the final norm).
// --generate N: sampling from the first --ids (prefill, then N steps), ids printed
// comma-separated on stdout; with --text, the generated tokens decoded by the model's tokenizer
// (tokenizer.json of the folder, or the GGUF's vocabulary) instead.
// --path PATH.json (instead of MODEL): a data-flow path as `shoal evolve` saves it
// (include/shoal/genome_dfs.h: {"format": "shoal-dfs-path", "models", "head_model", "steps"}),
// run by Model::load_path over the listed models; --dump-layers stage l + 1 is after step l.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "shoal/error.h"
#include "shoal/genome_dfs.h"
#include "shoal/gguf.h"
#include "shoal/model.h"
#include "shoal/sampling.h"
#include "shoal/tokenizer.h"
#include "shoal/weights.h"

namespace {

namespace fs = std::filesystem;

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < std::numeric_limits<int32_t>::min() ||
        v > std::numeric_limits<int32_t>::max()) {
      throw shoal::ConfigError("--ids: '" + item + "' is not a token id");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

// NPY format 1.0: magic, version, little-endian u16 header length, a Python dict literal padded
// with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes.
void write_npy(const fs::path& path, const std::vector<float>& data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const char magic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(magic, sizeof magic);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size() * sizeof(float)));
  if (!out) throw shoal::IoError("cannot write " + path.string());
}

std::vector<std::shared_ptr<const shoal::WeightSource>> open_sources(
    const std::vector<fs::path>& paths) {
  std::vector<std::shared_ptr<const shoal::WeightSource>> sources;
  for (const auto& p : paths) sources.push_back(shoal::open_weights(p));
  return sources;
}

struct Options {
  std::string model;
  std::vector<std::string> ids_text;
  std::string out, mode = "batch", dump_layers, path;
  int64_t prefill = 1;
  int generate = 0;
  bool text = false;
  shoal::SamplingParams sampling;
  shoal::ModelOptions model_options;
};

int run(const Options& o) {
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& t : o.ids_text) seqs.push_back(parse_ids(t));
  if (seqs.empty()) throw shoal::ConfigError("give at least one --ids");
  if (o.model.empty() == o.path.empty()) throw shoal::ConfigError("give MODEL or --path, not both");
  std::vector<fs::path> path_models;
  shoal::LayerPath layer_path;
  if (!o.path.empty()) {
    std::ifstream in(o.path, std::ios::binary);
    if (!in) throw shoal::IoError("cannot read " + o.path);
    const shoal::DfsPathFile file = shoal::dfs_path_from_json(nlohmann::json::parse(in));
    path_models.assign(file.models.begin(), file.models.end());
    layer_path = file.path;
  }
  const shoal::Model model =
      o.path.empty()
          ? shoal::Model::load(shoal::open_weights(o.model), o.model_options)
          : shoal::Model::load_path(open_sources(path_models), layer_path, o.model_options);
  const int64_t vocab = model.config().vocab_size;

  if (o.generate > 0) {
    shoal::Session session(model);
    shoal::Sampler sampler(o.sampling);
    session.prefill(seqs[0]);
    std::vector<int32_t> generated;
    std::string line;
    for (int i = 0; i < o.generate; ++i) {
      const int32_t id = sampler.sample(session.next_logits());
      generated.push_back(id);
      line += (i > 0 ? "," : "") + std::to_string(id);
      if (i + 1 < o.generate) session.append(id);
    }
    if (o.text) {
      const fs::path path = o.path.empty()
                                ? fs::path(o.model)
                                : path_models[static_cast<size_t>(layer_path.head_source)];
      const shoal::Tokenizer tok = fs::is_directory(path)
                                       ? shoal::Tokenizer::from_folder(path)
                                       : shoal::Tokenizer::from_gguf(shoal::GgufFile::open(path));
      line = tok.decode(generated);
    }
    std::printf("%s\n", line.c_str());
    return 0;
  }
  if (o.out.empty()) throw shoal::ConfigError("--out is required unless --generate is given");

  int64_t total = 0;
  std::vector<int64_t> offsets;
  for (const auto& s : seqs) {
    offsets.push_back(total);
    total += static_cast<int64_t>(s.size());
  }
  std::vector<float> out(static_cast<size_t>(total * vocab), std::nanf(""));
  auto put_row = [&](size_t seq, int64_t pos, std::span<const float> logits) {
    std::copy(logits.begin(), logits.end(), out.begin() + (offsets[seq] + pos) * vocab);
  };
  const int64_t prefill = std::max<int64_t>(1, o.prefill);

  if (o.mode == "batch") {
    std::vector<shoal::ScoreRequest> requests;
    for (const auto& s : seqs) requests.push_back({s, {}});
    shoal::LayerObserver observer;
    if (!o.dump_layers.empty()) {
      fs::create_directories(o.dump_layers);
      const int64_t hidden = model.config().hidden_size;
      observer = [&o, hidden](int stage, std::span<const float> h, int64_t n) {
        write_npy(fs::path(o.dump_layers) / ("stage_" + std::to_string(stage) + ".npy"),
                  std::vector<float>(h.begin(), h.end()), n, hidden);
      };
    }
    const auto logits = model.logits(requests, observer);
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (int64_t p = 0; p < logits[s].rows; ++p) put_row(s, p, logits[s].row(p));
    }
  } else if (o.mode == "decode") {
    for (size_t s = 0; s < seqs.size(); ++s) {
      shoal::Session session(model);
      const int64_t n = static_cast<int64_t>(seqs[s].size());
      const int64_t k = std::min(prefill, n);
      session.prefill(std::span<const int32_t>(seqs[s]).first(static_cast<size_t>(k)));
      put_row(s, k - 1, session.next_logits());
      for (int64_t p = k; p < n; ++p) {
        session.append(seqs[s][static_cast<size_t>(p)]);
        put_row(s, p, session.next_logits());
      }
    }
  } else if (o.mode == "batch-decode") {
    std::vector<shoal::Session> sessions;
    std::vector<int64_t> next(seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) sessions.emplace_back(model);
    {
      // First step: every sequence's prefill in one pass.
      std::vector<shoal::Session*> ptrs;
      std::vector<std::span<const int32_t>> ids;
      for (size_t s = 0; s < seqs.size(); ++s) {
        next[s] = std::min<int64_t>(prefill, static_cast<int64_t>(seqs[s].size()));
        ptrs.push_back(&sessions[s]);
        ids.push_back(std::span<const int32_t>(seqs[s]).first(static_cast<size_t>(next[s])));
      }
      model.extend(ptrs, ids);
      for (size_t s = 0; s < seqs.size(); ++s) put_row(s, next[s] - 1, sessions[s].next_logits());
    }
    for (;;) {
      std::vector<shoal::Session*> ptrs;
      std::vector<std::span<const int32_t>> ids;
      std::vector<size_t> which;
      for (size_t s = 0; s < seqs.size(); ++s) {
        if (next[s] >= static_cast<int64_t>(seqs[s].size())) continue;
        ptrs.push_back(&sessions[s]);
        ids.push_back(std::span<const int32_t>(seqs[s]).subspan(static_cast<size_t>(next[s]), 1));
        which.push_back(s);
      }
      if (ptrs.empty()) break;
      model.extend(ptrs, ids);
      for (size_t s : which) put_row(s, next[s]++, sessions[s].next_logits());
    }
  } else {
    throw shoal::ConfigError("--mode must be batch, decode or batch-decode, got '" + o.mode + "'");
  }
  write_npy(o.out, out, total, vocab);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Run shoal's inference engine on token ids and dump logits / hidden states"};
  Options o;
  app.add_option("model", o.model, "HF model folder or .gguf file (or give --path)");
  app.add_option("--path", o.path, "Data-flow path JSON (shoal-dfs-path) instead of MODEL");
  app.add_option("--ids", o.ids_text, "Comma-separated token ids (repeat for a batch)");
  app.add_option("--out", o.out, "Output .npy: float32 [total tokens, vocab]");
  app.add_option("--mode", o.mode, "batch, decode or batch-decode");
  app.add_option("--dump-layers", o.dump_layers, "Folder for per-stage hidden states (batch)");
  app.add_option("--prefill", o.prefill, "Tokens prefilled at once in the decode modes");
  app.add_option("--threads", o.model_options.n_threads, "Threads (0: all)");
  app.add_flag("--f32-weights", o.model_options.f32_weights, "Keep an f32 copy of the weights");
  app.add_flag("--bf16-activations", o.model_options.bf16_activations,
               "Round activations to BF16 in products with BF16 weights");
  app.add_option("--max-batch-tokens", o.model_options.max_batch_tokens);
  app.add_option("--generate", o.generate, "Sample this many tokens after the first --ids");
  app.add_option("--temperature", o.sampling.temperature);
  app.add_option("--top-k", o.sampling.top_k);
  app.add_option("--top-p", o.sampling.top_p);
  app.add_option("--seed", o.sampling.seed);
  app.add_flag("--text", o.text, "Print the generated text instead of ids");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
