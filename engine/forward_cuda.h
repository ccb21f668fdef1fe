/*
 * forward_cuda.h - the first layers of the forward pass on an NVIDIA GPU
 * (engine-internal; owned by the engine thread).
 *
 * Use: fwd_cuda_plan() decides how many layers go to the GPU (none when
 * there is no usable device, the model has something the kernels do not
 * handle, or nothing fits), fwd_init_split() (forward.h) prepares the CPU
 * part for the other layers, fwd_cuda_attach() uploads the GPU part, and
 * from then on fwd_eval() runs both.  fwd_free() detaches.
 *
 * In a build without the CUDA toolkit (no HAVE_CUDA_TOOLKIT) the same
 * calls exist: the plan is always 0 layers with the reason "built without
 * CUDA", and attach/eval fail.
 *
 * Return codes: 0 or a negative engine_status; messages go to the
 * caller's buffer (WHY).
 */
#ifndef TTYCHAT_FORWARD_CUDA_H
#define TTYCHAT_FORWARD_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pool.h"

struct fwd;
struct kv_cache;

struct fwd_cuda_plan {
	uint32_t n_layers;      /* layers for the GPU: 0 = run on the CPU */
	bool output;            /* the output norm and matrix too (n_layers == n_layer) */
	char device[128];       /* the device's name ("" when none) */
	uint64_t vram_free, vram_total;  /* at planning time */
	uint64_t need;          /* estimated device bytes for n_layers */
	char why[256];          /* why fewer layers than asked (or none), "" when all */
};

/* Decides the GPU part for model M at context N_CTX with batches of up to
 * MAX_BATCH and KV cache type KV_TYPE (a GGML type).  WANT: 0 = as many
 * layers as fit free VRAM with a safety margin (512 MiB + 5% of the
 * device), N > 0 = the first N layers at most (capped at what fits).
 * Never fails: a plan of 0 layers says why in p->why. */
void fwd_cuda_plan(const struct model *m, uint32_t n_ctx, int max_batch, uint32_t kv_type, int want,
		   struct fwd_cuda_plan *p);

/* How a front end asks for a device (engine_load_opts semantics). */
struct fwd_device_opts {
	int device;             /* enum engine_device */
	int gpu_layers;         /* ENGINE_GPU_LAYERS_AUTO (0), _NONE (-1) or N */
	uint32_t kv_type;       /* GGML type of the KV cache (K) */
	uint32_t kv_type_v;     /* V's type (0: as kv_type) */
	bool kv_rotated;        /* quantised rows stored rotated (kvquant.h) */
};

/* Everything above in one: plans, prepares the CPU part (fwd_init_split)
 * and uploads the GPU part; out of GPU memory at upload retries with the
 * layers that fit then, down to none.  BACKEND gets "cpu" or "cuda: NAME
 * (N/M layers)"; NOTICE gets "" or one line for the user: CUDA asked for
 * but unusable ("no CUDA device: ...; running on the CPU"; AUTO stays
 * quiet when there is simply no device), or fewer layers than asked or
 * than the model has.  The GPU has kernels for F16 and Q8_0 caches only,
 * K and V alike and not rotated: any other cache runs on the CPU (with a
 * notice unless AUTO found no device).  0, or the status of preparing the
 * CPU part. */
int fwd_init_device(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch,
		    const struct fwd_device_opts *o, char *backend, size_t backend_len, char *notice,
		    size_t notice_len);

/* Uploads layers 0 .. f->cpu_first-1 (and the output when f->cpu_first ==
 * n_layer) to device 0, with a KV mirror of KV_TYPE (GGML_TYPE_F16, or
 * GGML_TYPE_Q8_0 for head sizes that are multiples of 32: the caches
 * fwd_cuda_eval() then takes) for n_ctx positions and the scratch of a
 * batch.  0, or a negative status with a message in WHY and
 * everything uploaded freed again; on ENGINE_E_NOMEM *retry holds a layer
 * count that may fit now (0: none). */
int fwd_cuda_attach(struct fwd *f, uint32_t kv_type, uint32_t *retry, char *why, size_t whylen);
/* Frees the device part (NULL-safe; fwd_free() calls it). */
void fwd_cuda_detach(struct fwd *f);

/* The device part of fwd_eval(): embeds TOKENS (host), runs layers 0 ..
 * f->cpu_first-1 for each of the T tokens at positions kv->n.., appends
 * their K/V rows to the device mirror and to the host cache, and leaves
 * the residual stream in f->x, or (all layers on the GPU) the logits in
 * f->logits (of every token with all_logits, else the last).  Does not
 * touch kv->n or kv->tokens.  Prefill runs as batched GEMMs where cuBLAS
 * is usable, else token by token (fwd_cuda_prefill_mode()).  A failure
 * marks the device
 * part failed (fwd_cuda_failed) with its message in fwd_cuda_error(). */
int fwd_cuda_eval(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int T, bool all_logits);
bool fwd_cuda_failed(const struct fwd *f);
/* How prefill (T > 1) runs: "gemm" (batched, cuBLAS) or "token by token
 * (REASON)"; "" when nothing is attached. */
const char *fwd_cuda_prefill_mode(const struct fwd *f);
/* How a decode step runs: "CUDA graphs" (one replay per token of the
 * graph of its context bucket) or "plain launches (REASON)"; "" when
 * nothing is attached.  The answer may change after the first capture. */
const char *fwd_cuda_decode_mode(const struct fwd *f);
const char *fwd_cuda_error(const struct fwd *f);

/* Device memory: the whole device's total and free bytes (cudaMemGetInfo)
 * and what this pass allocated (weights, KV mirror, scratch).  All 0 when
 * nothing is attached. */
void fwd_cuda_usage(struct fwd *f, uint64_t *total, uint64_t *free_bytes, uint64_t *ours);

#endif
