/*
 * cuda_backend.h - the CUDA kernels of the engine behind a plain C API.
 *
 * This header has no CUDA types in it: C code (the engine, the tests)
 * includes it without the CUDA toolkit's headers, and the implementation
 * (the .cu files of engine/cuda, compiled by nvcc into libttychat_cuda.a)
 * links the CUDA runtime statically, so a binary built with it starts on
 * machines without a GPU or driver: cuda_backend_available() then returns 0 with a
 * "no CUDA device: ..." message and the caller stays on the CPU.
 *
 * Formats are those of the CPU engine (engine/quant.h): a weight is
 * uploaded exactly as stored in the GGUF file (quantised blocks, F16, BF16
 * or F32 rows), and every kernel dequantises on the fly.  Activations are
 * f32.  The KV cache is F16 or Q8_0, [pos][kv_head][head_dim] per layer,
 * like struct kv_cache in forward.h.
 *
 * Ownership: a cuda_ctx owns one CUDA stream on one device.  Device memory
 * is allocated through the context (struct cuda_buf, struct cuda_weight),
 * which counts bytes per kind (weights, KV, scratch) for the VRAM display;
 * the caller owns those structs and frees them before cuda_ctx_free().
 * Pointers called "device" below point into such buffers.
 *
 * Ordering: kernels are queued on the context's stream and run in the
 * order they were queued; the functions return once the launch is queued.
 * cuda_upload() and cuda_download() wait for the stream, so a download
 * after kernels sees their results.  An error inside a running kernel is
 * reported by the next call that waits (cuda_sync(), cuda_download()).
 *
 * Threads: cuda_backend_available() and cuda_device_query() may be called
 * from any thread.  A cuda_ctx and everything allocated through it belong
 * to one thread at a time (the engine thread); every entry point makes the
 * context's device current on the calling thread.
 *
 * Return codes: functions returning int return CUDA_BE_OK (0) or a negative
 * enum cuda_status; on failure the context keeps a one-line message
 * (cuda_ctx_error()).  Arguments are checked (sizes, overflow, types,
 * alignment) before anything is queued; a rejected call queues nothing.
 */
#ifndef TTYCHAT_CUDA_BACKEND_H
#define TTYCHAT_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum cuda_status {
	CUDA_BE_OK = 0,
	CUDA_BE_ENODEV = -1,      /* no driver, no device, or the device cannot be used */
	CUDA_BE_ENOMEM = -2,      /* device (or host) memory exhausted */
	CUDA_BE_EINVAL = -3,      /* bad argument: size, overflow, NULL, alignment */
	CUDA_BE_EUNSUPPORTED = -4,/* a type or shape no kernel here handles */
	CUDA_BE_ERUNTIME = -5,    /* any other CUDA error; the context may be unusable */
};

/* ---- devices ----------------------------------------------------------------- */

/* Number of usable CUDA devices (> 0), or 0 with a one-line reason in err
 * ("no CUDA device: CUDA driver not found ..."); never fails otherwise. */
int cuda_backend_available(char *err, size_t errlen);

struct cuda_device_info {
	char name[128];
	int cc_major, cc_minor;   /* compute capability */
	int sm_count;
	size_t total_bytes, free_bytes;  /* device memory, from cudaMemGetInfo */
	size_t smem_per_block;    /* shared memory a block may use (default limit) */
};

/* Facts about device number DEVICE.  0, or CUDA_BE_ENODEV / CUDA_BE_EINVAL
 * with a message in err. */
int cuda_device_query(int device, struct cuda_device_info *info, char *err, size_t errlen);

/* ---- context ----------------------------------------------------------------- */

typedef struct cuda_ctx cuda_ctx;

/* Creates a context (one stream) on DEVICE.  0 and *out set, or a negative
 * cuda_status with a message in err and *out NULL. */
int cuda_ctx_create(cuda_ctx **out, int device, char *err, size_t errlen);
/* Waits for queued work and frees the stream; NULL is a no-op.  Buffers
 * still allocated through the context are not freed (free them first). */
void cuda_ctx_free(cuda_ctx *c);
/* The last failure's one-line message ("" when none); valid until the next
 * call on the context. */
const char *cuda_ctx_error(const cuda_ctx *c);
/* Waits until every queued kernel has finished.  0, or CUDA_BE_ERUNTIME
 * when one of them failed. */
int cuda_sync(cuda_ctx *c);

/* ---- memory ------------------------------------------------------------------ */

enum cuda_mem_kind {
	CUDA_MEM_WEIGHTS = 0,
	CUDA_MEM_KV = 1,
	CUDA_MEM_SCRATCH = 2,
	CUDA_MEM_KINDS = 3,
};

/* A device allocation.  Zero-initialise before first use; ptr is NULL when
 * nothing is allocated.  Allocations are at least 256-byte aligned. */
struct cuda_buf {
	void *ptr;
	size_t bytes;
	enum cuda_mem_kind kind;
};

/* Allocates BYTES (> 0) of device memory.  0, or CUDA_BE_ENOMEM (nothing
 * allocated, b untouched) / CUDA_BE_EINVAL. */
int cuda_buf_alloc(cuda_ctx *c, struct cuda_buf *b, size_t bytes, enum cuda_mem_kind kind);
/* Frees b (after the stream's queued work) and zeroes it; an empty b is a
 * no-op. */
void cuda_buf_free(cuda_ctx *c, struct cuda_buf *b);

/* Host -> device and device -> host copies of BYTES, ordered after the
 * queued kernels; both return when the copy is complete.  0, or
 * CUDA_BE_EINVAL / CUDA_BE_ERUNTIME (a failed earlier kernel shows here). */
int cuda_upload(cuda_ctx *c, void *dst_device, const void *src, size_t bytes);
int cuda_download(cuda_ctx *c, void *dst, const void *src_device, size_t bytes);
/* Queues a fill of BYTES zero bytes. */
int cuda_memzero(cuda_ctx *c, void *dst_device, size_t bytes);

struct cuda_mem_usage {
	size_t ours[CUDA_MEM_KINDS];  /* bytes allocated through this context */
	size_t dev_free, dev_total;   /* whole device (every process) */
};
int cuda_mem_get_usage(cuda_ctx *c, struct cuda_mem_usage *u);

/* ---- weights ----------------------------------------------------------------- */

/* A 2-D weight in device memory: ROWS rows of COLS elements of TYPE
 * (enum ggml_type), rows packed row_bytes apart. */
struct cuda_weight {
	struct cuda_buf buf;
	uint32_t type;
	int64_t rows, cols;
	size_t row_bytes;
};

/* 1 when TYPE is a weight type the kernels here handle: F32, F16, BF16,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. */
int cuda_type_supported(uint32_t type);

/* Uploads a host weight as stored: row r is src_row_bytes * r bytes after
 * SRC and holds ggml_row_bytes(type, cols) bytes (src_row_bytes may be
 * larger: padded rows are packed on the way).  COLS must be a positive
 * multiple of the type's block size, ROWS positive.  On success *w owns a
 * CUDA_MEM_WEIGHTS buffer; free it with cuda_weight_free(). */
int cuda_weight_upload(cuda_ctx *c, struct cuda_weight *w, uint32_t type, int64_t rows, int64_t cols,
		       const void *src, size_t src_row_bytes);
void cuda_weight_free(cuda_ctx *c, struct cuda_weight *w);

/* ---- kernels (all pointers are device pointers, all f32 unless noted) --------- */

/* y[r] = sum_j W[r][j] * x[j] for every row r of W: the decode
 * matrix-vector product, W dequantised on the fly, accumulated in f32.
 * x has w->cols floats and, for the block types, is 16-byte aligned; y has
 * w->rows floats and must not overlap x. */
int cuda_matvec(cuda_ctx *c, const struct cuda_weight *w, const float *x, float *y);

/* y[i][j] = W[row0 + i][j] for 0 <= i < n_rows: dequantised rows (token
 * embeddings), bit-identical to quant_dequant_row() of the CPU engine. */
int cuda_dequant_rows(cuda_ctx *c, const struct cuda_weight *w, int64_t row0, int64_t n_rows,
		      float *y);

/* RMS norm of ROWS rows of N floats: y = x / sqrt(mean(x^2) + eps) * w
 * (w, N floats, may be NULL: no weight).  y may equal x.  Sums in double
 * like the CPU engine. */
int cuda_rmsnorm(cuda_ctx *c, float *y, const float *x, const float *w, int64_t rows, int64_t n,
		 float eps);

enum cuda_rope_style {
	CUDA_ROPE_NORM = 0,  /* rotate pairs (x0,x1),(x2,x3)...: llama (= ROPE_NORM) */
	CUDA_ROPE_NEOX = 1,  /* rotate (x_i, x_{i+n_rot/2}): qwen, phi3, gemma (= ROPE_NEOX) */
};

/* Rotary position embedding in place on x[n_tokens][n_heads][head_dim];
 * token t is at position pos0 + t.  The first n_rot (even, <= head_dim)
 * dims of each head rotate by theta_i = (pos * scale) * base^(-2i/n_rot),
 * the power formed by repeated multiplication as the CPU engine does, and
 * divided by freq_factors[i] when freq_factors (n_rot/2 floats, device) is
 * not NULL. */
int cuda_rope(cuda_ctx *c, float *x, int n_tokens, int n_heads, int head_dim, int n_rot,
	      uint32_t pos0, float base, float scale, const float *freq_factors,
	      enum cuda_rope_style style);

/* cuda_rope() for one token whose position is read from device memory
 * (*pos_dev) when the kernel runs: a decode step captured in a CUDA graph
 * replays with the position of the token at hand. */
int cuda_rope_dev(cuda_ctx *c, float *x, int n_heads, int head_dim, int n_rot, const uint32_t *pos_dev,
		  float base, float scale, const float *freq_factors, enum cuda_rope_style style);

enum cuda_act {
	CUDA_ACT_SILU = 0,       /* gate = silu(gate) * up */
	CUDA_ACT_GELU_TANH = 1,  /* gate = gelu_tanh(gate) * up, through f16 as ggml */
};

/* Gated activation in place: gate[i] = act(gate[i]) * up[i], 0 <= i < n. */
int cuda_glu(cuda_ctx *c, float *gate, const float *up, int64_t n, enum cuda_act act);

/* Row-wise softmax of ROWS rows of N floats: y = exp(s*x - max) / sum with
 * s = SCALE.  y may equal x.  A row of -inf gives NaN. */
int cuda_softmax(cuda_ctx *c, float *y, const float *x, int64_t rows, int64_t n, float scale);

/* y[i] += x[i], 0 <= i < n (residual connections). */
int cuda_add(cuda_ctx *c, float *y, const float *x, int64_t n);
/* y[r][i] += b[i] for ROWS rows of N floats (a bias on every token). */
int cuda_add_rows(cuda_ctx *c, float *y, const float *b, int64_t rows, int64_t n);
/* Device-to-device copy of HEIGHT rows of WIDTH bytes, row r from
 * src + r * spitch to dst + r * dpitch (splitting fused [q|k|v] or
 * [gate|up] rows of a batch).  Queued; the regions must not overlap. */
int cuda_copy2d(cuda_ctx *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
		size_t height);

/* dst[i] = fp16(x[i]) rounded to nearest even (dst: n uint16_t, device):
 * appending K and V rows to an F16 cache. */
int cuda_f32_to_f16(cuda_ctx *c, void *dst, const float *x, int64_t n);

/* Bytes of one position (all KV heads, kd = n_head_kv * head_dim values)
 * of a KV cache of TYPE: kd * 2 for F16, kd / 32 * 34 for Q8_0 (kd a
 * multiple of 32; the CPU engine's row layout); 0 for a type without
 * kernels. */
size_t cuda_kv_row_bytes(uint32_t type, int64_t kd);

/* Appends n_tok K (or V) rows of kd floats (x, [n_tok][kd]) to a cache of
 * TYPE (F16: rounded to nearest even; Q8_0: quantised bit for bit as the
 * CPU's quant_quantize_row) at rows pos .. pos + n_tok - 1, or
 * at row *pos_dev (device memory, read when the kernel runs; n_tok 1) when
 * pos_dev is not NULL.  Rows are cuda_kv_row_bytes() apart. */
int cuda_kv_store(cuda_ctx *c, void *cache, uint32_t type, int64_t kd, uint32_t pos, const uint32_t *pos_dev,
		  const float *x, int n_tok);

/* Decode attention for one token, split along the sequence (flash
 * decoding): one kernel computes, per KV head and chunk of positions,
 * scores, a local softmax and a partial weighted sum of V for the query
 * heads of that KV head; a second kernel merges the chunks.
 *
 *   q    [n_head][head_dim] f32 (rounded to f16 before q.k, as on the CPU)
 *   k, v F16 caches: position p, KV head g at element
 *        (p * n_head_kv + g) * head_dim of each; or Q8_0 caches (rows of
 *        cuda_kv_row_bytes(), head g from block g * head_dim / 32): q is
 *        then quantised to Q8_0 and each score is the CPU's Q8_0 dot
 *        product, block by block
 *   out  [n_head][head_dim] f32; must not overlap q
 *
 * attends positions first .. first + n - 1 (n >= 1) with scores
 * scale * q.k; query head h reads KV head h / (n_head / n_head_kv).
 * WORKSPACE (device) holds at least cuda_attn_decode_workspace(n_head,
 * n_head_kv, head_dim, N) bytes for some N >= n: size it once for the
 * largest context.
 *
 * With pos_dev (device memory) the range is read when the kernel runs:
 * positions first' .. pos, pos = *pos_dev, first' = pos + 1 - window
 * when window > 0 and that is positive, else 0; then n is the most
 * positions any such call attends (it sizes the grid: pos + 1 - first'
 * must not exceed it) and first must be 0.  A decode step captured once
 * in a CUDA graph replays for every position up to that bound. */
struct cuda_attn_args {
	const float *q;
	const void *k, *v;
	uint32_t kv_type;         /* GGML_TYPE_F16, or GGML_TYPE_Q8_0 (head_dim % 32 == 0) */
	int n_head, n_head_kv, head_dim;
	uint32_t first, n;
	float scale;
	float *out;
	void *workspace;
	size_t workspace_bytes;
	const uint32_t *pos_dev;  /* NULL: first and n as given */
	uint32_t window;          /* with pos_dev: 0 = none */
};
int cuda_attn_decode(cuda_ctx *c, const struct cuda_attn_args *a);

/* Workspace bytes cuda_attn_decode() needs to attend up to N_CTX
 * positions with these head counts; 0 when the shape is unsupported
 * (n_head not a multiple of n_head_kv, head_dim 0 or > 1024, or a group
 * of query heads too large for shared memory). */
size_t cuda_attn_decode_workspace(int n_head, int n_head_kv, int head_dim, uint32_t n_ctx);

/* ---- CUDA graphs ----------------------------------------------------------------- */

/* A captured sequence of kernels, replayed with one launch (the decode
 * step).  Between cuda_capture_begin() and cuda_capture_end() the calls
 * above queue nothing: they are recorded (their argument checks still
 * run, and a rejected one makes the capture fail); calls that wait
 * (cuda_upload, cuda_download, cuda_sync, cuda_buf_free) must not be made.
 * The graph keeps the pointers and values the calls were given: replay
 * it only while those buffers live, and pass what changes per replay
 * through device memory (cuda_rope_dev, cuda_kv_store's and
 * cuda_attn_args' pos_dev). */
typedef struct cuda_graph cuda_graph;

/* Starts recording the context's stream (this thread's calls only). */
int cuda_capture_begin(cuda_ctx *c);
/* Stops recording and makes the graph: 0 and *out, or a negative status
 * (*out NULL) when the capture or a call during it failed, with the
 * message on the context; the stream is back to normal either way. */
int cuda_capture_end(cuda_ctx *c, cuda_graph **out);
/* Queues one replay of G on the context's stream. */
int cuda_graph_launch(cuda_ctx *c, cuda_graph *g);
/* Frees G after the stream's queued work; NULL is a no-op. */
void cuda_graph_free(cuda_ctx *c, cuda_graph *g);

/* ---- batched work (prefill) --------------------------------------------------- */

/* 0 when cuda_gemm() can run on this context: cuBLAS (libcublas.so of the
 * toolkit's major version, or the file $TTYCHAT_CUBLAS names) is loaded
 * with dlopen() on the first call and bound to the context's stream.
 * CUDA_BE_EUNSUPPORTED with the reason in cuda_ctx_error() when it cannot
 * be (no library, too old, no handle); the answer does not change after. */
int cuda_gemm_available(cuda_ctx *c);

/* Rows row0 .. row0 + n_rows - 1 of W as f16 (n_rows * cols halves at
 * DST, 16-byte aligned): each value is the CPU's dequantised f32 value
 * rounded to the nearest f16. */
int cuda_dequant_f16(cuda_ctx *c, const struct cuda_weight *w, int64_t row0, int64_t n_rows, void *dst);

/* Bytes of f16 tile cuda_gemm() needs at least for W (one row; 0 for an
 * F16 weight, used in place), and the tile a budget of CAP bytes gives
 * (whole rows, at least one). */
size_t cuda_gemm_tile_bytes(const struct cuda_weight *w, size_t cap);

/* y[t][r] = sum_j W[r][j] x16[t][j] for 0 <= t < n_tok: the prefill
 * product.  x16 holds n_tok rows of w->cols halves (f16 activations,
 * 16-byte aligned), y n_tok rows of w->rows floats.  W is dequantised
 * into TILE (tile_bytes, as cuda_gemm_tile_bytes() says; NULL for F16
 * weights) a tile of rows at a time and each tile multiplied by cuBLAS
 * GemmEx, f16 x f16 with f32 accumulation, on the tensor cores.
 * cuda_gemm_available() must have returned 0.  y must not overlap x16 or
 * the tile. */
int cuda_gemm(cuda_ctx *c, const struct cuda_weight *w, const void *x16, int64_t n_tok, float *y, void *tile,
	      size_t tile_bytes);

/* Causal attention of n_tok tokens at positions pos0 .. pos0 + n_tok - 1
 * whose K/V rows are already in the cache (F16, layout as in
 * cuda_attn_args, Q8_0 read as cuda_attn_decode() reads it): token t sees
 * positions first_t .. pos0 + t, first_t =
 * pos0 + t + 1 - window when window > 0 and that is positive, else 0.
 *   q    [n_tok][n_head][head_dim] f32 (rounded to f16 before q.k)
 *   out  [n_tok][n_head][head_dim] f32; must not overlap q
 * Tiled over positions with an online softmax (no score matrix); needs
 * head_dim even and at most 256 (cuda_attn_prefill_supported()). */
struct cuda_attn_prefill_args {
	const float *q;
	const void *k, *v;
	uint32_t kv_type;         /* GGML_TYPE_F16 or GGML_TYPE_Q8_0 */
	int n_head, n_head_kv, head_dim;
	uint32_t pos0;
	int n_tok;
	uint32_t window;          /* 0: none */
	float scale;
	float *out;
};
int cuda_attn_prefill(cuda_ctx *c, const struct cuda_attn_prefill_args *a);
/* 1 when cuda_attn_prefill() handles these head counts and KV type. */
int cuda_attn_prefill_supported(int n_head, int n_head_kv, int head_dim, uint32_t kv_type);

/* ---- measuring the device --------------------------------------------------------- */

/* Device memory bandwidth as a copy kernel sees it: REPS timed copies of
 * BYTES (rounded down to 16-byte words; at least 1 MiB) from one device
 * buffer to another (16-byte loads and stores, grid-stride), after one
 * untimed copy.  Each copy reads and writes BYTES; *gbps gets the median
 * over the reps of 2 * BYTES / time in GB/s (1e9 bytes).  The buffers
 * are allocated and freed here (CUDA_MEM_SCRATCH).  0, or a negative
 * status (CUDA_BE_ENOMEM when 2 * BYTES do not fit). */
int cuda_membw(cuda_ctx *c, size_t bytes, int reps, double *gbps);

#ifdef __cplusplus
}
#endif

#endif
