/*
 * probe.c - model files read without loading them (engine_file in
 * engine.h).
 *
 * A thin layer over the hardened GGUF reader: engine_file_open() is
 * gguf_open() plus one pass over the header that gathers what the front
 * ends show (struct engine_file_info), so the picker, the catalogue and
 * `inspect` read a model the same way and none of them needs gguf.h.  The
 * accessors only forward to the reader, whose open already checked every
 * count, length, offset and shape.  Sums over tensors are bounded by the
 * file size (bytes) or saturate (elements); the KV figure multiplies only
 * factors below 2^20 each.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "gguf.h"

_Static_assert(ENGINE_TYPE_COUNT == GGML_TYPE_COUNT, "engine.h's tensor type bound");

struct engine_file {
	gguf_file *g;
	struct engine_file_info info;
};

/* llama.cpp's general.file_type numbers (the "mostly" quantisation). */
static const char *ftype_name(uint64_t t)
{
	static const char *const names[] = {
		[0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0",
		[9] = "Q5_1", [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L",
		[14] = "Q4_K_S", [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K",
		[19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S", [22] = "IQ3_XS", [23] = "IQ3_XXS",
		[24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M", [28] = "IQ2_S",
		[29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
		[37] = "TQ2_0", [38] = "MXFP4_MOE", [39] = "NVFP4", [40] = "Q1_0", [41] = "Q2_0",
	};
	return t < sizeof names / sizeof names[0] ? names[t] : NULL;
}

/* The type with the most bytes in BY_TYPE (the lowest on ties), or -1. */
static int top_type(const uint64_t *by_type)
{
	int best = -1;
	for (int t = 0; t < GGML_TYPE_COUNT; t++)
		if (by_type[t] && (best < 0 || by_type[t] > by_type[best]))
			best = t;
	return best;
}

static uint64_t arch_uint(const gguf_file *g, const char *arch, const char *suffix, bool *found)
{
	char key[160];
	uint64_t v = 0;
	int w = snprintf(key, sizeof key, "%s.%s", arch, suffix);
	bool ok = arch[0] && w > 0 && (size_t)w < sizeof key && gguf_get_uint(g, key, &v);
	if (found)
		*found = ok;
	return ok ? v : 0;
}

/* Element I of the per-layer integer array KEY (int32 or uint32), or -1. */
static int64_t arr_uint_at(const gguf_file *g, const char *key, uint64_t i)
{
	uint64_t n;
	const void *data;
	int32_t v;
	if ((!gguf_get_arr(g, key, GGUF_VT_INT32, &n, &data) && !gguf_get_arr(g, key, GGUF_VT_UINT32, &n, &data)) ||
	    i >= n)
		return -1;
	memcpy(&v, (const char *)data + i * 4, 4);
	return v < 0 ? -1 : v;
}

/* K and V bytes per position at F16, as the engine allocates them: each
 * layer's own KV heads (one count or one per layer) and head sizes (the
 * sliding-window layers' where the file gives them, Gemma 4); the last
 * attention.shared_kv_layers layers read earlier layers' K/V and cost
 * nothing.  0 when a factor is out of range. */
static uint64_t kv_per_pos(const gguf_file *g, const struct engine_file_info *in)
{
	const uint64_t lim = 1u << 20;
	char key[160];
	bool found;
	uint64_t k_swa = arch_uint(g, in->arch, "attention.key_length_swa", &found), v_swa;
	if (!found)
		k_swa = in->head_dim_k;
	v_swa = arch_uint(g, in->arch, "attention.value_length_swa", &found);
	if (!found)
		v_swa = k_swa;
	uint64_t shared = arch_uint(g, in->arch, "attention.shared_kv_layers", NULL);
	if (in->n_layer >= lim || shared > in->n_layer || k_swa >= lim || v_swa >= lim)
		return 0;
	uint64_t n_swa_arr = 0, total = 0;
	const void *swa = NULL;
	snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", in->arch);
	if (!gguf_get_arr(g, key, GGUF_VT_BOOL, &n_swa_arr, &swa))
		swa = NULL;
	snprintf(key, sizeof key, "%s.attention.head_count_kv", in->arch);
	for (uint64_t l = 0; l < in->n_layer - shared; l++) {
		int64_t hk = arr_uint_at(g, key, l);
		uint64_t kv_heads = hk >= 0 ? (uint64_t)hk : in->n_head_kv;
		bool is_swa = swa && l < n_swa_arr && ((const uint8_t *)swa)[l];
		uint64_t dk = is_swa ? k_swa : in->head_dim_k, dv = is_swa ? v_swa : in->head_dim_v;
		if (kv_heads >= lim || dk >= lim || dv >= lim)
			return 0;
		total += kv_heads * (dk + dv) * 2;
	}
	return total;
}

static void gather(engine_file *f)
{
	const gguf_file *g = f->g;
	struct engine_file_info *in = &f->info;
	in->gguf_version = gguf_version(g);
	in->alignment = gguf_alignment(g);
	in->file_bytes = gguf_file_size(g);
	in->data_offset = gguf_data_offset(g);
	in->n_keys = gguf_n_kv(g);
	in->n_tensors = gguf_n_tensors(g);

	uint64_t matrix_bytes[GGML_TYPE_COUNT] = {0}, matrices = 0;
	for (uint64_t i = 0; i < in->n_tensors; i++) {
		const struct gguf_tensor *t = gguf_tensor_at(g, i);
		if (__builtin_add_overflow(in->n_params, t->n_elements, &in->n_params))
			in->n_params = UINT64_MAX;
		in->tensor_bytes += t->size;
		if (t->n_dims >= 2) {
			matrix_bytes[t->type] += t->size;
			matrices += t->size;
		}
	}
	uint64_t ft;
	const char *q = gguf_get_uint(g, "general.file_type", &ft) ? ftype_name(ft) : NULL;
	int best = top_type(matrix_bytes);
	snprintf(in->quant, sizeof in->quant, "%s", q ? q : best >= 0 ? ggml_type_name((uint32_t)best) : "?");
	for (int k = 0; k < 2 && best >= 0; k++) {
		size_t l = strlen(in->quant_mix);
		snprintf(in->quant_mix + l, sizeof in->quant_mix - l, "%s%s %.0f%%", k ? " " : "",
			 ggml_type_name((uint32_t)best), 100.0 * (double)matrix_bytes[best] / (double)matrices);
		matrix_bytes[best] = 0;
		best = top_type(matrix_bytes);
	}

	struct gguf_str a;
	if (gguf_get_str(g, "general.architecture", &a) && a.len < sizeof in->arch) {
		memcpy(in->arch, a.ptr, a.len);
		in->arch[a.len] = '\0';
	}
	bool found;
	in->n_ctx_train = arch_uint(g, in->arch, "context_length", NULL);
	in->n_layer = arch_uint(g, in->arch, "block_count", NULL);
	in->n_embd = arch_uint(g, in->arch, "embedding_length", NULL);
	in->n_head = arch_uint(g, in->arch, "attention.head_count", NULL);
	in->n_head_kv = arch_uint(g, in->arch, "attention.head_count_kv", &found);
	if (!found) {
		/* one count per layer (Gemma 4): the largest */
		char key[160];
		snprintf(key, sizeof key, "%s.attention.head_count_kv", in->arch);
		in->n_head_kv = 0;
		for (uint64_t l = 0; l < in->n_layer && l < (1u << 20); l++) {
			int64_t h = arr_uint_at(g, key, l);
			if (h < 0)
				break;
			in->n_head_kv = (uint64_t)h > in->n_head_kv ? (uint64_t)h : in->n_head_kv;
		}
		if (in->n_head_kv == 0)
			in->n_head_kv = in->n_head;
	}
	in->head_dim_k = arch_uint(g, in->arch, "attention.key_length", &found);
	if (!found)
		in->head_dim_k = in->n_head ? in->n_embd / in->n_head : 0;
	in->head_dim_v = arch_uint(g, in->arch, "attention.value_length", &found);
	if (!found)
		in->head_dim_v = in->head_dim_k;
	const uint64_t lim = 1u << 20;
	/* Gated DeltaNet layers (qwen35): every layer but each
	 * full_attention_interval-th (default 4), or the file's list; they
	 * keep a state instead of KV rows */
	uint64_t conv = arch_uint(g, in->arch, "ssm.conv_kernel", NULL);
	uint64_t S = arch_uint(g, in->arch, "ssm.state_size", NULL);
	uint64_t HK = arch_uint(g, in->arch, "ssm.group_count", NULL);
	uint64_t HV = arch_uint(g, in->arch, "ssm.time_step_rank", NULL);
	uint64_t sc_l = arch_uint(g, in->arch, "shortconv.l_cache", NULL);
	uint64_t rows_rec = 0;   /* KV bytes per position kv_per_pos counted for them */
	if (conv && S && HK && HV && conv < 64 && S < 4096 && HK < lim && HV < lim && in->n_layer < lim) {
		uint64_t interval = arch_uint(g, in->arch, "full_attention_interval", &found);
		bool rec[1024];
		if (!found || interval == 0 || interval > 1024)
			interval = 4;
		if (in->n_layer <= 1024 &&
		    model_recurrent_layers(g, in->arch, (uint32_t)in->n_layer, (uint32_t)interval, rec))
			for (uint64_t i = 0; i < in->n_layer; i++)
				in->n_recurrent += rec[i];
		const uint64_t per_layer = (S * (2 * HK + HV) * (conv - 1) + HV * S * S) * 4;
		in->rec_state_bytes = in->n_recurrent * per_layer * (2 + KV_MAX_CKPT);
		if (in->n_head_kv < lim && in->head_dim_k < lim && in->head_dim_v < lim)
			rows_rec = in->n_recurrent * in->n_head_kv * (in->head_dim_k + in->head_dim_v) * 2;
	} else if (sc_l > 1 && sc_l < 64 && in->n_layer < lim && in->n_embd < lim) {
		/* lfm2: the layers whose head_count_kv entry is 0 (kv_per_pos
		 * counts no rows for them) keep their last sc_l - 1 inputs */
		char key[96];
		snprintf(key, sizeof key, "%s.attention.head_count_kv", in->arch);
		for (uint64_t i = 0; i < in->n_layer; i++)
			in->n_recurrent += arr_uint_at(g, key, i) == 0;
		in->rec_state_bytes = in->n_recurrent * in->n_embd * (sc_l - 1) * 4 * (2 + KV_MAX_CKPT);
	}
	if (in->n_head_kv < lim && in->head_dim_k < lim && in->head_dim_v < lim) {
		const uint64_t all = kv_per_pos(g, in);
		in->kv_bytes_per_pos = all > rows_rec ? all - rows_rec : 0;
	}
}

uint64_t engine_kv_bytes_per_pos(const struct engine_file_info *in, int type_k, int type_v)
{
	const uint64_t bk = engine_kv_type_bytes64(type_k), bv = engine_kv_type_bytes64(type_v);
	const uint64_t hk = in->head_dim_k, hv = in->head_dim_v;
	if (!bk || !bv || hk + hv == 0 || in->kv_bytes_per_pos >= (1u << 20))
		return 0;
	/* f16 is 128 bytes per 64 elements: each side's share of the f16
	 * bytes, times its type's bytes per 64 elements over 128 */
	return (in->kv_bytes_per_pos * hk * bk + in->kv_bytes_per_pos * hv * bv) / ((hk + hv) * 128);
}

engine_file *engine_file_open(const char *path, char *err, size_t errlen)
{
	engine_file *f = calloc(1, sizeof *f);
	if (!f) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	f->g = gguf_open_model(path, err, errlen);
	if (!f->g) {
		free(f);
		return NULL;
	}
	gather(f);
	return f;
}

void engine_file_close(engine_file *f)
{
	if (!f)
		return;
	gguf_close(f->g);
	free(f);
}

const char *engine_file_path(const engine_file *f)
{
	return gguf_path(f->g);
}

const struct engine_file_info *engine_file_info(const engine_file *f)
{
	return &f->info;
}

bool engine_file_get_str(const engine_file *f, const char *key, const char **s, size_t *len)
{
	struct gguf_str v;
	if (!gguf_get_str(f->g, key, &v))
		return false;
	*s = v.ptr;
	*len = (size_t)v.len;
	return true;
}

bool engine_file_get_uint(const engine_file *f, const char *key, uint64_t *out)
{
	return gguf_get_uint(f->g, key, out);
}

bool engine_file_get_f32(const engine_file *f, const char *key, float *out)
{
	return gguf_get_f32(f->g, key, out);
}

bool engine_file_get_strs(const engine_file *f, const char *key, uint64_t *n)
{
	return gguf_get_arr_str_n(f->g, key, n);
}

bool engine_file_get_strs_at(const engine_file *f, const char *key, uint64_t i, const char **s, size_t *len)
{
	struct gguf_str v = gguf_arr_str(f->g, key, i);
	if (!v.ptr)
		return false;
	*s = v.ptr;
	*len = (size_t)v.len;
	return true;
}

bool engine_file_tensor(const engine_file *f, uint64_t i, struct engine_tensor_info *t)
{
	if (i >= gguf_n_tensors(f->g))
		return false;
	const struct gguf_tensor *g = gguf_tensor_at(f->g, i);
	memset(t, 0, sizeof *t);
	t->name = g->name.ptr;
	t->name_len = (size_t)g->name.len;
	t->type = g->type;
	t->type_name = ggml_type_name(g->type);
	t->n_dims = g->n_dims;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = g->ne[d];
	t->n_elements = g->n_elements;
	t->offset = gguf_data_offset(f->g) + g->offset;
	t->size = g->size;
	return true;
}
