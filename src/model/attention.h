#pragma once
// Causal grouped-query attention without a [T x T] matrix, FlashAttention-2 style on the CPU.
// The forward runs per (row, head, tile of 32 queries) over tiles of 64 keys with an online
// softmax (running max and sum, output rescaled when the max grows) and keeps only the final
// log-sum-exp per query; the backward recomputes each probability tile from it. Live memory is a
// few 32 x 64 tiles per thread plus a per-thread workspace, grown once and reused, that holds K
// (and V in the backward) transposed tile by tile: linear in the sequence length. The visible
// keys of query t (within its row) are [key_start[t], t]: key_start encodes document boundaries
// of packed rows (block-diagonal mask) and sliding windows; tiles with no visible key are
// skipped. Each output element is summed by one thread in a fixed order, so results are
// bitwise reproducible and independent of the thread count. The tile products run on AVX-512
// when the CPU has it, else on portable C++ (model/attention_kernels.h).
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
// Throws bidora::Error if heads is not a multiple of kv_heads or a key_start[t] is outside [0, t].
void attention_forward(const float* q, const float* k, const float* v, const int32_t* key_start,
                       const AttentionShape& s, float scale, float* out, float* lse);

// Gradients given dout and the forward's out and lse. dq: [rows*seq, heads*hd] (overwritten);
// dk, dv: [rows*seq, kv_heads*hd] (overwritten). Parallel over (row, kv head): the query heads of
// a group accumulate into the same dk/dv rows, so they share a task.
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
