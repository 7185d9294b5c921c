#pragma once
// Causal grouped-query attention without a [T x T] matrix: each query row computes its scores
// into a per-thread buffer of length <= T, so memory is linear in the sequence length. The
// visible keys of query t (within its row) are [key_start[t], t]: key_start encodes document
// boundaries of packed rows (block-diagonal mask) and sliding windows.
#include <cstdint>
#include <vector>

namespace bidora {

struct AttentionShape {
  int64_t rows = 0;      // sequences in the batch
  int64_t seq = 0;       // tokens per sequence
  int64_t heads = 0;     // query heads
  int64_t kv_heads = 0;  // key/value heads; query head h uses kv head h / (heads / kv_heads)
  int64_t head_dim = 0;
};

// q: [rows*seq, heads*hd]; k, v: [rows*seq, kv_heads*hd]; out: [rows*seq, heads*hd].
// lse (optional): [rows*seq, heads] receives log Σ exp(scores) per query, for the backward pass.
void attention_forward(const float* q, const float* k, const float* v, const int32_t* key_start,
                       const AttentionShape& s, float scale, float* out, float* lse);

// Gradients given dout and the forward's lse. dq: [rows*seq, heads*hd] (overwritten);
// dk, dv: [rows*seq, kv_heads*hd] (overwritten).
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* dout,
                        const float* lse, const int32_t* key_start, const AttentionShape& s, float scale,
                        float* dq, float* dk, float* dv);

// key_start for one layer: documents start where position_ids restart at 0 (HF packing), and a
// sliding window (if window > 0) limits keys to i - window < j. Fills `out` with [rows*seq]
// (reusing its storage: the decoder calls this for every layer of every pass).
void attention_key_start(const int32_t* position_ids, int64_t rows, int64_t seq, int64_t window,
                         std::vector<int32_t>& out);
std::vector<int32_t> attention_key_start(const int32_t* position_ids, int64_t rows, int64_t seq,
                                         int64_t window);

}  // namespace bidora
