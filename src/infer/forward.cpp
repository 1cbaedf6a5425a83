#include "infer/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "infer/forward_attention.h"
#include "infer/forward_kernels.h"
#include "infer/model_config.h"

namespace shoal::infer {

namespace {

// Views of one source's tensors; f32 conversions are owned by `mw`.
struct Binder {
  ModelWeights& mw;
  const WeightSource& source;
  const BindOptions& options;

  const float* to_f32(const TensorView& t) {
    auto buf = std::make_unique<float[]>(static_cast<size_t>(t.numel()));
    convert_to_f32(t.dtype, t.data, buf.get(), t.numel());
    const float* p = buf.get();
    mw.owned_bytes += static_cast<size_t>(t.numel()) * sizeof(float);
    mw.owned.push_back(std::move(buf));
    return p;
  }
  const float* vec(const std::string& name) { return to_f32(*source.tensor(name)); }
  Linear mat(const std::string& name, bool has_bias) {
    const TensorView t = *source.tensor(name);
    Linear l{t.dtype, t.data, t.shape[0], t.shape[1], nullptr};
    l.bf16_activations = options.bf16_activations;
    if (options.f32_matrices && t.dtype != DType::kF32) {
      l.data = reinterpret_cast<const std::byte*>(to_f32(t));
      l.dtype = DType::kF32;
    }
    if (has_bias) l.bias = vec(name.substr(0, name.size() - 6) + "bias");  // "weight" -> "bias"
    return l;
  }
};

}  // namespace

void bind_head(const ModelConfig& c, const WeightSource& source, const BindOptions& options,
               ModelWeights& mw) {
  Binder b{mw, source, options};
  mw.embed = b.mat("model.embed_tokens.weight", false);
  mw.final_norm = b.vec("model.norm.weight");
  mw.lm_head = c.tie_word_embeddings ? mw.embed : b.mat("lm_head.weight", false);
}

LayerWeights bind_layer(const ModelConfig& c, const WeightSource& source, int64_t l,
                        const BindOptions& options, ModelWeights& owner) {
  Binder b{owner, source, options};
  auto name = [&](const char* rest) { return layer_tensor(l, rest); };
  LayerWeights lw;
  lw.attn_norm = b.vec(name("input_layernorm.weight"));
  lw.q = b.mat(name("self_attn.q_proj.weight"), c.qkv_bias);
  lw.k = b.mat(name("self_attn.k_proj.weight"), c.qkv_bias);
  lw.v = b.mat(name("self_attn.v_proj.weight"), c.qkv_bias);
  lw.o = b.mat(name("self_attn.o_proj.weight"), c.o_bias);
  if (c.qk_norm) {
    lw.q_norm = b.vec(name("self_attn.q_norm.weight"));
    lw.k_norm = b.vec(name("self_attn.k_norm.weight"));
  }
  lw.mlp_norm = b.vec(name("post_attention_layernorm.weight"));
  lw.gate = b.mat(name("mlp.gate_proj.weight"), c.mlp_bias);
  lw.up = b.mat(name("mlp.up_proj.weight"), c.mlp_bias);
  lw.down = b.mat(name("mlp.down_proj.weight"), c.mlp_bias);
  return lw;
}

ModelWeights bind_weights(const ModelConfig& c, const WeightSource& source,
                          const BindOptions& options) {
  ModelWeights mw;
  bind_head(c, source, options, mw);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    mw.layers.push_back(bind_layer(c, source, l, options, mw));
  }
  return mw;
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const RopeScaling& rs = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    // transformers: 1 / theta^(2i / head_dim), in f32.
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
    f = static_cast<float>(f);
    if (rs.kind == RopeScaling::Kind::kLinear) f = f / rs.factor;
    if (rs.kind == RopeScaling::Kind::kLlama3) {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band
      // between is interpolated smoothly in 1 / wavelength.
      const double old_len = static_cast<double>(rs.original_max_position_embeddings);
      const double low_freq_wavelen = old_len / rs.low_freq_factor;
      const double high_freq_wavelen = old_len / rs.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f = f / rs.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth =
            (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return inv;
}

Forward::Forward(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool)
    : c_(config), w_(weights), pool_(pool), inv_freq_(rope_inv_freq(config)) {}

float* Forward::buffer(std::vector<float>& b, int64_t n) {
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

template <typename Fn>
void Forward::for_rows(int64_t n, int64_t row_cost, Fn&& fn) {
  // Blocks of about 64K elements of work; a decode step (one row) runs inline.
  const int64_t per = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(row_cost, 1));
  const int64_t n_blocks = (n + per - 1) / per;
  if (n_blocks <= 1) {
    for (int64_t r = 0; r < n; ++r) fn(r);
    return;
  }
  pool_.parallel_for(static_cast<size_t>(n_blocks), [&](size_t b) {
    const int64_t r0 = static_cast<int64_t>(b) * per;
    for (int64_t r = r0; r < std::min(n, r0 + per); ++r) fn(r);
  });
}

void Forward::fill_rope_tables(std::span<const Segment> segments, int64_t n_tokens) {
  const int64_t half = c_.head_dim / 2;
  float* cs = buffer(rope_cos_, n_tokens * half);
  float* sn = buffer(rope_sin_, n_tokens * half);
  int64_t row = 0;
  for (const Segment& s : segments) {
    for (int64_t i = 0; i < s.n_new; ++i, ++row) {
      // The angle is rounded to f32 as transformers computes it (inv_freq x position in f32),
      // so long contexts rotate exactly as the reference implementation does.
      const float pos = static_cast<float>(s.pos0 + i);
      for (int64_t j = 0; j < half; ++j) {
        const double angle = static_cast<double>(pos * inv_freq_[static_cast<size_t>(j)]);
        cs[row * half + j] = static_cast<float>(std::cos(angle));
        sn[row * half + j] = static_cast<float>(std::sin(angle));
      }
    }
  }
}

void Forward::run_layer(int64_t layer, std::span<const Segment> segments, int64_t n_tokens) {
  const LayerWeights& lw = w_.layers[static_cast<size_t>(layer)];
  const int64_t h = c_.hidden_size, qd = c_.q_dim(), kvd = c_.kv_dim(), ff = c_.intermediate_size;
  const int64_t hd = c_.head_dim, half = hd / 2;
  const double eps = c_.rms_norm_eps;
  float* x = x_.data();
  float* xn = xn_.data();
  float* q = q_.data();
  float* k = k_.data();
  float* v = v_.data();

  // Attention block.
  for_rows(n_tokens, h, [&](int64_t t) { rms_norm(x + t * h, lw.attn_norm, h, eps, xn + t * h); });
  const LinearOutput qkv[] = {{&lw.q, q, qd}, {&lw.k, k, kvd}, {&lw.v, v, kvd}};
  linear_shared(pool_, qkv, xn, h, n_tokens);
  const float* cs = rope_cos_.data();
  const float* sn = rope_sin_.data();
  for_rows(n_tokens, qd + kvd, [&](int64_t t) {
    for (int64_t i = 0; i < c_.n_heads; ++i) {
      float* head = q + t * qd + i * hd;
      if (lw.q_norm != nullptr) rms_norm(head, lw.q_norm, hd, eps, head);
      rope_rotate_half(head, cs + t * half, sn + t * half, half);
    }
    for (int64_t i = 0; i < c_.n_kv_heads; ++i) {
      float* head = k + t * kvd + i * hd;
      if (lw.k_norm != nullptr) rms_norm(head, lw.k_norm, hd, eps, head);
      rope_rotate_half(head, cs + t * half, sn + t * half, half);
    }
  });
  std::vector<AttentionSegment> att_segments;
  att_segments.reserve(segments.size());
  int64_t row = 0;
  for (const Segment& s : segments) {
    AttentionSegment a{row, s.n_new, s.pos0, k + row * kvd, v + row * kvd};
    if (s.cache != nullptr) {
      float* ck = s.cache->keys(layer) + s.pos0 * kvd;
      float* cv = s.cache->values(layer) + s.pos0 * kvd;
      std::memcpy(ck, k + row * kvd, static_cast<size_t>(s.n_new * kvd) * sizeof(float));
      std::memcpy(cv, v + row * kvd, static_cast<size_t>(s.n_new * kvd) * sizeof(float));
      a.keys = s.cache->keys(layer);
      a.values = s.cache->values(layer);
    }
    att_segments.push_back(a);
    row += s.n_new;
  }
  const AttentionShape shape{c_.n_heads, c_.n_kv_heads, hd, c_.sliding_window};
  float* att = att_.data();
  attention(pool_, shape, att_segments, q, att);
  linear(pool_, lw.o, att, qd, n_tokens, x, h, true);

  // MLP block.
  for_rows(n_tokens, h, [&](int64_t t) { rms_norm(x + t * h, lw.mlp_norm, h, eps, xn + t * h); });
  float* gate = gate_.data();
  float* up = up_.data();
  const LinearOutput gate_up[] = {{&lw.gate, gate, ff}, {&lw.up, up, ff}};
  linear_shared(pool_, gate_up, xn, h, n_tokens);
  for_rows(n_tokens, ff, [&](int64_t t) { silu_mul(gate + t * ff, up + t * ff, ff); });
  linear(pool_, lw.down, gate, ff, n_tokens, x, h, true);
}

void Forward::run(std::span<const Segment> segments, std::span<const int64_t> logit_rows,
                  std::span<float* const> logit_dest, const LayerObserver* observer) {
  int64_t n_tokens = 0;
  for (const Segment& s : segments) n_tokens += s.n_new;
  if (n_tokens == 0) return;
  const int64_t h = c_.hidden_size;
  buffer(x_, n_tokens * h);
  buffer(xn_, n_tokens * h);
  buffer(q_, n_tokens * c_.q_dim());
  buffer(k_, n_tokens * c_.kv_dim());
  buffer(v_, n_tokens * c_.kv_dim());
  buffer(att_, n_tokens * c_.q_dim());
  buffer(gate_, n_tokens * c_.intermediate_size);
  buffer(up_, n_tokens * c_.intermediate_size);
  auto observe = [&](int stage, const float* hidden) {
    if (observer != nullptr && *observer) {
      (*observer)(stage, std::span<const float>(hidden, static_cast<size_t>(n_tokens * h)),
                  n_tokens);
    }
  };

  std::vector<const int32_t*> ids(static_cast<size_t>(n_tokens));
  int64_t row = 0;
  for (const Segment& s : segments) {
    for (int64_t i = 0; i < s.n_new; ++i) ids[static_cast<size_t>(row++)] = s.ids + i;
  }
  float* x = x_.data();
  for_rows(n_tokens, h, [&](int64_t t) {
    convert_to_f32(w_.embed.dtype, w_.embed.row(*ids[static_cast<size_t>(t)]), x + t * h, h);
  });
  observe(0, x);
  fill_rope_tables(segments, n_tokens);
  for (int64_t l = 0; l < c_.n_layers; ++l) {
    // A LayerPath's input scale multiplies the whole residual stream before the layer.
    const float scale = w_.input_scales.empty() ? 1.0f : w_.input_scales[static_cast<size_t>(l)];
    if (scale != 1.0f) {
      for_rows(n_tokens, h, [&](int64_t t) {
        for (int64_t i = 0; i < h; ++i) x[t * h + i] *= scale;
      });
    }
    run_layer(l, segments, n_tokens);
    observe(static_cast<int>(l + 1), x);
  }

  // Final norm: of every row when observed, else only of the rows whose logits are wanted.
  const int64_t n_out = static_cast<int64_t>(logit_rows.size());
  float* g = buffer(gathered_, std::max<int64_t>(n_out, 1) * h);
  if (observer != nullptr && *observer) {
    float* xn = xn_.data();
    for_rows(n_tokens, h, [&](int64_t t) {
      rms_norm(x + t * h, w_.final_norm, h, c_.rms_norm_eps, xn + t * h);
    });
    observe(static_cast<int>(c_.n_layers + 1), xn);
    for (int64_t r = 0; r < n_out; ++r) {
      std::memcpy(g + r * h, xn + logit_rows[static_cast<size_t>(r)] * h,
                  static_cast<size_t>(h) * sizeof(float));
    }
  } else {
    for_rows(n_out, h, [&](int64_t r) {
      rms_norm(x + logit_rows[static_cast<size_t>(r)] * h, w_.final_norm, h, c_.rms_norm_eps,
               g + r * h);
    });
  }
  // The output projection in chunks of rows, so the temporary stays bounded (64 MiB: 512 rows of
  // a 32K vocabulary, 128 of Qwen's 152K) however many rows are wanted; each chunk reads the
  // whole output matrix once, so chunks are as large as that bound allows.
  const int64_t vocab = c_.vocab_size;
  const int64_t chunk =
      std::clamp<int64_t>((int64_t{64} << 20) / (vocab * int64_t{sizeof(float)}), 128, 512);
  for (int64_t r0 = 0; r0 < n_out; r0 += chunk) {
    const int64_t n = std::min(chunk, n_out - r0);
    // Destinations that are consecutive rows of one matrix (a request's logits) are written in
    // place; others through the temporary.
    float* const* dest = logit_dest.data() + r0;
    bool contiguous = true;
    for (int64_t r = 1; r < n && contiguous; ++r) contiguous = dest[r] == dest[0] + r * vocab;
    if (contiguous) {
      linear(pool_, w_.lm_head, g + r0 * h, h, n, dest[0], vocab, false);
      continue;
    }
    float* tmp = buffer(logits_tmp_, n * vocab);
    linear(pool_, w_.lm_head, g + r0 * h, h, n, tmp, vocab, false);
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(dest[r], tmp + r * vocab, static_cast<size_t>(vocab) * sizeof(float));
    }
  }
}

}  // namespace shoal::infer
