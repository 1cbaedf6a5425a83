#include "shoal/model.h"

#include <algorithm>
#include <mutex>
#include <set>

#include "infer/forward.h"
#include "infer/layer_path.h"
#include "infer/model_config.h"
#include "shoal/error.h"

namespace shoal {
namespace infer {

// What a Model owns. Heap-allocated so that Sessions and the Forward runner may point into it
// while the Model object itself moves.
struct ModelImpl {
  std::unique_ptr<WeightSource> source;
  // A LayerPath model's sources instead (source is null); path_head is the head source.
  std::vector<std::shared_ptr<const WeightSource>> path_sources;
  size_t path_head = 0;
  ModelConfig config;
  ModelOptions options;
  ModelWeights weights;
  std::unique_ptr<ThreadPool> pool;
  mutable std::mutex mutex;  // serialises compute: one pool, one set of activation buffers
  std::unique_ptr<Forward> forward;

  void check_ids(std::span<const int32_t> ids, const char* what) const {
    if (ids.empty()) throw ConfigError(std::string(what) + ": empty token sequence");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= config.vocab_size) {
        throw ConfigError(std::string(what) + ": token id " + std::to_string(ids[i]) +
                          " at index " + std::to_string(i) + " is outside the vocabulary [0, " +
                          std::to_string(config.vocab_size) + ")");
      }
    }
  }
};

namespace {
BindOptions bind_options(const ModelOptions& options) {
  return {options.f32_weights, options.bf16_activations};
}
}  // namespace

}  // namespace infer

Model::Model(std::unique_ptr<infer::ModelImpl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(std::unique_ptr<WeightSource> weights, const ModelOptions& options) {
  if (!weights) throw ConfigError("Model::load: no weight source");
  if (options.max_batch_tokens < 1) {
    throw ConfigError("Model::load: max_batch_tokens must be at least 1");
  }
  auto m = std::make_unique<infer::ModelImpl>();
  m->config = parse_model_config(weights->config(), weights->describe());
  infer::check_tensors(m->config, *weights);
  m->options = options;
  m->source = std::move(weights);
  infer::use_single_threaded_blas();
  m->weights = infer::bind_weights(m->config, *m->source, infer::bind_options(options));
  m->pool = std::make_unique<ThreadPool>(options.n_threads);
  m->forward = std::make_unique<infer::Forward>(m->config, m->weights, *m->pool);
  return Model(std::move(m));
}

Model Model::load_path(std::vector<std::shared_ptr<const WeightSource>> sources,
                       const LayerPath& path, const ModelOptions& options) {
  if (options.max_batch_tokens < 1) {
    throw ConfigError("Model::load_path: max_batch_tokens must be at least 1");
  }
  auto m = std::make_unique<infer::ModelImpl>();
  infer::PathModel pm = infer::bind_path(sources, path, infer::bind_options(options));
  m->config = pm.config;
  m->weights = std::move(pm.weights);
  m->options = options;
  m->path_sources = std::move(sources);
  m->path_head = static_cast<size_t>(path.head_source);
  infer::use_single_threaded_blas();
  m->pool = std::make_unique<ThreadPool>(options.n_threads);
  m->forward = std::make_unique<infer::Forward>(m->config, m->weights, *m->pool);
  return Model(std::move(m));
}

const ModelConfig& Model::config() const {
  return impl_->config;
}
const WeightSource& Model::weights() const {
  if (!impl_->source) return *impl_->path_sources[impl_->path_head];
  return *impl_->source;
}

std::vector<LogitMatrix> Model::logits(std::span<const ScoreRequest> requests,
                                       const LayerObserver& observer) const {
  const infer::ModelImpl& m = *impl_;
  const int64_t vocab = m.config.vocab_size;
  std::vector<LogitMatrix> out(requests.size());
  // Validate everything before computing anything.
  for (size_t r = 0; r < requests.size(); ++r) {
    const ScoreRequest& req = requests[r];
    const std::string what = "score request " + std::to_string(r);
    m.check_ids(req.ids, what.c_str());
    for (const int64_t p : req.positions) {
      if (p < 0 || p >= static_cast<int64_t>(req.ids.size())) {
        throw ConfigError(what + ": position " + std::to_string(p) +
                          " is outside the sequence [0, " + std::to_string(req.ids.size()) + ")");
      }
    }
    out[r].vocab = vocab;
    out[r].rows = req.positions.empty() ? static_cast<int64_t>(req.ids.size())
                                        : static_cast<int64_t>(req.positions.size());
    out[r].data.resize(static_cast<size_t>(out[r].rows * vocab));
  }

  std::lock_guard lock(m.mutex);
  std::vector<infer::Segment> segments;
  std::vector<int64_t> rows;
  std::vector<float*> dest;
  size_t first = 0;
  while (first < requests.size()) {
    // Pack whole sequences up to the token budget (at least one).
    size_t last = first;
    int64_t n_tokens = 0;
    segments.clear();
    rows.clear();
    dest.clear();
    while (last < requests.size()) {
      const int64_t n = static_cast<int64_t>(requests[last].ids.size());
      if (last > first && n_tokens + n > m.options.max_batch_tokens) break;
      segments.push_back({requests[last].ids.data(), n, 0, nullptr});
      if (requests[last].positions.empty()) {
        for (int64_t i = 0; i < n; ++i) rows.push_back(n_tokens + i);
      } else {
        for (const int64_t p : requests[last].positions) rows.push_back(n_tokens + p);
      }
      for (int64_t r = 0; r < out[last].rows; ++r)
        dest.push_back(out[last].data.data() + r * vocab);
      n_tokens += n;
      ++last;
    }
    m.forward->run(segments, rows, dest, &observer);
    first = last;
  }
  return out;
}

void Model::extend(std::span<Session* const> sessions,
                   std::span<const std::span<const int32_t>> ids) const {
  extend_impl(*impl_, sessions, ids);
}

void Model::extend_impl(const infer::ModelImpl& m, std::span<Session* const> sessions,
                        std::span<const std::span<const int32_t>> ids) {
  if (sessions.size() != ids.size()) {
    throw ConfigError("Model::extend: " + std::to_string(sessions.size()) + " sessions but " +
                      std::to_string(ids.size()) + " token lists");
  }
  std::set<const Session*> seen;
  for (size_t i = 0; i < sessions.size(); ++i) {
    if (sessions[i] == nullptr || sessions[i]->model_ != &m) {
      throw ConfigError("Model::extend: session " + std::to_string(i) +
                        " is null or belongs to another model");
    }
    if (!seen.insert(sessions[i]).second) {
      throw ConfigError("Model::extend: session " + std::to_string(i) + " appears twice");
    }
    m.check_ids(ids[i], ("Model::extend: tokens for session " + std::to_string(i)).c_str());
  }

  std::lock_guard lock(m.mutex);
  const int64_t vocab = m.config.vocab_size;
  // Each round appends the next piece of every unfinished session; pieces are sized so a round
  // stays within the token budget. A session's logits come from the round with its last token.
  const int64_t piece = std::max<int64_t>(
      1, m.options.max_batch_tokens / static_cast<int64_t>(std::max<size_t>(sessions.size(), 1)));
  std::vector<int64_t> done(sessions.size(), 0);
  std::vector<infer::Segment> segments;
  std::vector<int64_t> rows;
  std::vector<size_t> finishing;
  std::vector<float*> dest;
  for (;;) {
    segments.clear();
    rows.clear();
    finishing.clear();
    dest.clear();
    int64_t n_tokens = 0;
    for (size_t i = 0; i < sessions.size(); ++i) {
      const int64_t total = static_cast<int64_t>(ids[i].size());
      if (done[i] == total) continue;
      Session& s = *sessions[i];
      const int64_t n = std::min(piece, total - done[i]);
      const int64_t pos0 = s.size();
      s.cache_->reserve(pos0 + n, pos0);
      segments.push_back({ids[i].data() + done[i], n, pos0, s.cache_.get()});
      n_tokens += n;
      if (done[i] + n == total) {
        rows.push_back(n_tokens - 1);
        finishing.push_back(i);
        s.has_logits_ = false;
        s.logits_.resize(static_cast<size_t>(vocab));
        dest.push_back(s.logits_.data());
      }
    }
    if (segments.empty()) break;
    m.forward->run(segments, rows, dest, nullptr);
    // Commit: the pieces are now in the caches.
    for (size_t i = 0, seg = 0; i < sessions.size(); ++i) {
      const int64_t total = static_cast<int64_t>(ids[i].size());
      if (done[i] == total) continue;
      Session& s = *sessions[i];
      const int64_t n = segments[seg++].n_new;
      s.tokens_.insert(s.tokens_.end(), ids[i].begin() + done[i], ids[i].begin() + done[i] + n);
      s.has_logits_ = false;
      done[i] += n;
    }
    for (const size_t i : finishing) sessions[i]->has_logits_ = true;
  }
}

Session::Session(const Model& model)
    : model_(model.impl_.get()),
      cache_(std::make_unique<infer::KvCache>(model_->config.n_layers, model_->config.kv_dim())) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

void Session::prefill(std::span<const int32_t> ids) {
  Session* self = this;
  const std::span<const int32_t> lists[] = {ids};
  Model::extend_impl(*model_, std::span<Session* const>(&self, 1), lists);
}

std::span<const float> Session::next_logits() const {
  if (!has_logits_) {
    throw Error(tokens_.empty() ? "Session::next_logits: the session holds no tokens"
                                : "Session::next_logits: no logits since the last truncate");
  }
  return logits_;
}

void Session::truncate(int64_t n) {
  if (n < 0 || n > size()) {
    throw ConfigError("Session::truncate: " + std::to_string(n) + " is outside [0, " +
                      std::to_string(size()) + "]");
  }
  if (n == size() && has_logits_) return;
  tokens_.resize(static_cast<size_t>(n));
  has_logits_ = false;
}

}  // namespace shoal
