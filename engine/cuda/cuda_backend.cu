/*
 * cuda_backend.cu - the C API of cuda_backend.h: devices, the context and
 * its stream, device memory with per-kind accounting, weight upload, and
 * the checked entry points of every kernel.
 *
 * Every public function checks its arguments here (counts positive, sizes
 * free of overflow, types known, pointers non-NULL and aligned where a
 * kernel needs it, outputs not overlapping inputs they must not overlap)
 * and only then calls the launcher in cuda_quant.cu / cuda_ops.cu /
 * cuda_attn.cu, so the kernels never see a shape they were not written
 * for.  Failures leave a one-line message on the context.
 *
 * The CUDA runtime is linked statically (libcudart_static): it loads the
 * driver (libcuda.so.1) itself when first used, so a machine without the
 * driver or a GPU gets cudaErrorInsufficientDriver / cudaErrorNoDevice
 * from the first call, which cuda_backend_available() turns into "no CUDA
 * device: ...".  The kernels are built for compute capability 8.0 and up
 * (sm_80/86/89/90 + compute_90 PTX); older devices are reported unusable
 * rather than failing at the first launch.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.cuh"

#define MIN_CC_MAJOR 8

static void set_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t n, const char *fmt, ...)
{
	if (!err || n == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

#define CTX_ERR(c, ...) set_err((c)->err, sizeof (c)->err, __VA_ARGS__)

/* A runtime error as "what: text (cudaErrorName)" in the caller's buffer,
 * and the matching status. */
static int cuda_fail(char *err, size_t n, cudaError_t e, const char *what)
{
	set_err(err, n, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
	switch (e) {
	case cudaErrorMemoryAllocation: return CUDA_BE_ENOMEM;
	case cudaErrorNoDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorInvalidDevice:
	case cudaErrorDevicesUnavailable:
	case cudaErrorStubLibrary:
	case cudaErrorSystemDriverMismatch:
	case cudaErrorCompatNotSupportedOnDevice:
	case cudaErrorNoKernelImageForDevice:
		return CUDA_BE_ENODEV;
	default: return CUDA_BE_ERUNTIME;
	}
}

static int ctx_fail(cuda_ctx *c, cudaError_t e, const char *what)
{
	return cuda_fail(c->err, sizeof c->err, e, what);
}

/* Makes the context's device current on this thread; clears the message. */
static int enter(cuda_ctx *c)
{
	c->err[0] = '\0';
	cudaError_t e = cudaSetDevice(c->device);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, "cudaSetDevice");
}

/* After a launch: a bad configuration shows at once, a fault later. */
static int launched(cuda_ctx *c, const char *what)
{
	cudaError_t e = cudaGetLastError();
	return e == cudaSuccess ? 0 : ctx_fail(c, e, what);
}

/* ---- devices ---------------------------------------------------------------------- */

static int device_cc(int dev, int *major, int *minor)
{
	if (cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
		return -1;
	return 0;
}

extern "C" int cuda_backend_available(char *err, size_t errlen)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);

	set_err(err, errlen, "%s", "");
	if (e == cudaErrorInsufficientDriver) {
		cudaGetLastError();
		set_err(err, errlen, "no CUDA device: no NVIDIA driver (libcuda.so.1), or one older than "
			"this build's CUDA %d.%d runtime", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
		return 0;
	}
	if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
		cudaGetLastError();
		set_err(err, errlen, "no CUDA device: the NVIDIA driver reports no GPU");
		return 0;
	}
	if (e != cudaSuccess) {
		cudaGetLastError();
		set_err(err, errlen, "no CUDA device: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
		return 0;
	}
	int usable = 0, major = 0, minor = 0;
	for (int d = 0; d < n; d++)
		if (device_cc(d, &major, &minor) == 0 && major >= MIN_CC_MAJOR)
			usable++;
	if (!usable)
		set_err(err, errlen, "no CUDA device: %d GPU(s), none of compute capability %d.0 or newer "
			"(device 0 is %d.%d)", n, MIN_CC_MAJOR, major, minor);
	return usable;
}

extern "C" int cuda_device_query(int device, struct cuda_device_info *info, char *err, size_t errlen)
{
	int n = 0;
	cudaError_t e;

	if (!info) {
		set_err(err, errlen, "cuda_device_query: info is NULL");
		return CUDA_BE_EINVAL;
	}
	memset(info, 0, sizeof *info);
	if ((e = cudaGetDeviceCount(&n)) != cudaSuccess) {
		cudaGetLastError();
		return cuda_fail(err, errlen, e, "no CUDA device");
	}
	if (device < 0 || device >= n) {
		set_err(err, errlen, "CUDA device %d does not exist (%d found)", device, n);
		return CUDA_BE_EINVAL;
	}
	cudaDeviceProp prop;
	if ((e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
		return cuda_fail(err, errlen, e, "cudaGetDeviceProperties");
	snprintf(info->name, sizeof info->name, "%.127s", prop.name);
	int v = 0;
	if (device_cc(device, &info->cc_major, &info->cc_minor) != 0)
		return cuda_fail(err, errlen, cudaGetLastError(), "cudaDeviceGetAttribute");
	if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device) == cudaSuccess)
		info->sm_count = v;
	if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlock, device) == cudaSuccess)
		info->smem_per_block = (size_t)v;
	int prev = 0;
	cudaGetDevice(&prev);
	if ((e = cudaSetDevice(device)) != cudaSuccess)
		return cuda_fail(err, errlen, e, "cudaSetDevice");
	e = cudaMemGetInfo(&info->free_bytes, &info->total_bytes);
	cudaSetDevice(prev);
	if (e != cudaSuccess)
		return cuda_fail(err, errlen, e, "cudaMemGetInfo");
	return CUDA_BE_OK;
}

/* ---- context ----------------------------------------------------------------------- */

extern "C" int cuda_ctx_create(cuda_ctx **out, int device, char *err, size_t errlen)
{
	struct cuda_device_info info;
	int rc;

	if (!out) {
		set_err(err, errlen, "cuda_ctx_create: out is NULL");
		return CUDA_BE_EINVAL;
	}
	*out = NULL;
	if ((rc = cuda_device_query(device, &info, err, errlen)) != CUDA_BE_OK)
		return rc;
	if (info.cc_major < MIN_CC_MAJOR) {
		set_err(err, errlen, "CUDA device %d (%s) has compute capability %d.%d; the kernels need %d.0 or newer",
			device, info.name, info.cc_major, info.cc_minor, MIN_CC_MAJOR);
		return CUDA_BE_ENODEV;
	}
	cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
	if (!c) {
		set_err(err, errlen, "out of host memory");
		return CUDA_BE_ENOMEM;
	}
	c->device = device;
	c->smem_per_block = info.smem_per_block;
	c->sm_count = info.sm_count;
	cudaError_t e = cudaSetDevice(device);
	if (e == cudaSuccess)
		e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
	if (e != cudaSuccess) {
		rc = cuda_fail(err, errlen, e, "creating a CUDA stream");
		free(c);
		return rc;
	}
	*out = c;
	return CUDA_BE_OK;
}

extern "C" void cuda_ctx_free(cuda_ctx *c)
{
	if (!c)
		return;
	if (cudaSetDevice(c->device) == cudaSuccess) {
		cudaStreamSynchronize(c->stream);
		cu_blas_release(c);
		cudaStreamDestroy(c->stream);
	}
	free(c);
}

extern "C" const char *cuda_ctx_error(const cuda_ctx *c)
{
	return c ? c->err : "no CUDA context";
}

extern "C" int cuda_sync(cuda_ctx *c)
{
	int rc = enter(c);
	if (rc)
		return rc;
	cudaError_t e = cudaStreamSynchronize(c->stream);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, "CUDA kernel failed");
}

/* ---- memory --------------------------------------------------------------------------- */

extern "C" int cuda_buf_alloc(cuda_ctx *c, struct cuda_buf *b, size_t bytes, enum cuda_mem_kind kind)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!b || bytes == 0 || (int)kind < 0 || kind >= CUDA_MEM_KINDS) {
		CTX_ERR(c, "cuda_buf_alloc: bad argument (%zu bytes, kind %d)", bytes, (int)kind);
		return CUDA_BE_EINVAL;
	}
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, bytes);
	if (e != cudaSuccess) {
		cudaGetLastError();
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		CTX_ERR(c, "out of GPU memory: %zu MiB asked, %zu of %zu MiB free (%s)", bytes >> 20, fr >> 20,
			tot >> 20, cudaGetErrorName(e));
		return e == cudaErrorMemoryAllocation ? CUDA_BE_ENOMEM : CUDA_BE_ERUNTIME;
	}
	b->ptr = p;
	b->bytes = bytes;
	b->kind = kind;
	c->used[kind] += bytes;
	return CUDA_BE_OK;
}

extern "C" void cuda_buf_free(cuda_ctx *c, struct cuda_buf *b)
{
	if (!c || !b || !b->ptr)
		return;
	if (enter(c) == 0) {
		cudaStreamSynchronize(c->stream);
		cudaFree(b->ptr);
	}
	if ((int)b->kind >= 0 && b->kind < CUDA_MEM_KINDS && c->used[b->kind] >= b->bytes)
		c->used[b->kind] -= b->bytes;
	memset(b, 0, sizeof *b);
}

static int copy(cuda_ctx *c, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (bytes == 0)
		return CUDA_BE_OK;
	if (!dst || !src) {
		CTX_ERR(c, "%s: NULL pointer", what);
		return CUDA_BE_EINVAL;
	}
	cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, c->stream);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(c->stream);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, what);
}

extern "C" int cuda_upload(cuda_ctx *c, void *dst_device, const void *src, size_t bytes)
{
	return copy(c, dst_device, src, bytes, cudaMemcpyHostToDevice, "cuda_upload");
}

extern "C" int cuda_download(cuda_ctx *c, void *dst, const void *src_device, size_t bytes)
{
	return copy(c, dst, src_device, bytes, cudaMemcpyDeviceToHost, "cuda_download");
}

extern "C" int cuda_memzero(cuda_ctx *c, void *dst_device, size_t bytes)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (bytes == 0)
		return CUDA_BE_OK;
	if (!dst_device) {
		CTX_ERR(c, "cuda_memzero: NULL pointer");
		return CUDA_BE_EINVAL;
	}
	cudaError_t e = cudaMemsetAsync(dst_device, 0, bytes, c->stream);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, "cuda_memzero");
}

extern "C" int cuda_mem_get_usage(cuda_ctx *c, struct cuda_mem_usage *u)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!u) {
		CTX_ERR(c, "cuda_mem_get_usage: NULL pointer");
		return CUDA_BE_EINVAL;
	}
	memset(u, 0, sizeof *u);
	for (int k = 0; k < CUDA_MEM_KINDS; k++)
		u->ours[k] = c->used[k];
	cudaError_t e = cudaMemGetInfo(&u->dev_free, &u->dev_total);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, "cudaMemGetInfo");
}

/* ---- weights --------------------------------------------------------------------------- */

extern "C" int cuda_type_supported(uint32_t type)
{
	return cu_quant_supported(type);
}

static int is_block_type(uint32_t type)
{
	return type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16;
}

/* Rows and columns the kernels' index arithmetic is written for. */
#define MAX_ROWS ((int64_t)INT32_MAX)
#define MAX_COLS ((int64_t)1 << 40)

extern "C" int cuda_weight_upload(cuda_ctx *c, struct cuda_weight *w, uint32_t type, int64_t rows, int64_t cols,
				  const void *src, size_t src_row_bytes)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!w || !src) {
		CTX_ERR(c, "cuda_weight_upload: NULL pointer");
		return CUDA_BE_EINVAL;
	}
	if (!cu_quant_supported(type)) {
		CTX_ERR(c, "cuda_weight_upload: tensor type %s (%u) has no CUDA kernel", ggml_type_name(type), type);
		return CUDA_BE_EUNSUPPORTED;
	}
	if (rows <= 0 || rows > MAX_ROWS || cols <= 0 || cols > MAX_COLS) {
		CTX_ERR(c, "cuda_weight_upload: bad shape %lld x %lld", (long long)rows, (long long)cols);
		return CUDA_BE_EINVAL;
	}
	const size_t rb = ggml_row_bytes(type, (uint64_t)cols);
	if (rb == 0) {
		CTX_ERR(c, "cuda_weight_upload: %lld columns is not a multiple of the %s block size %u",
			(long long)cols, ggml_type_name(type), ggml_type_block_size(type));
		return CUDA_BE_EINVAL;
	}
	if (src_row_bytes < rb) {
		CTX_ERR(c, "cuda_weight_upload: row stride %zu below the row size %zu", src_row_bytes, rb);
		return CUDA_BE_EINVAL;
	}
	if ((uint64_t)rows > SIZE_MAX / rb || (uint64_t)(rows - 1) > SIZE_MAX / src_row_bytes) {
		CTX_ERR(c, "cuda_weight_upload: %lld rows of %zu bytes overflow", (long long)rows, rb);
		return CUDA_BE_EINVAL;
	}
	struct cuda_buf b = {NULL, 0, CUDA_MEM_WEIGHTS};
	if ((rc = cuda_buf_alloc(c, &b, (size_t)rows * rb, CUDA_MEM_WEIGHTS)) != 0)
		return rc;
	cudaError_t e;
	if (src_row_bytes == rb)
		e = cudaMemcpyAsync(b.ptr, src, (size_t)rows * rb, cudaMemcpyHostToDevice, c->stream);
	else
		e = cudaMemcpy2DAsync(b.ptr, rb, src, src_row_bytes, rb, (size_t)rows, cudaMemcpyHostToDevice,
				      c->stream);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(c->stream);
	if (e != cudaSuccess) {
		rc = ctx_fail(c, e, "uploading a weight");
		cuda_buf_free(c, &b);
		return rc;
	}
	w->buf = b;
	w->type = type;
	w->rows = rows;
	w->cols = cols;
	w->row_bytes = rb;
	return CUDA_BE_OK;
}

extern "C" void cuda_weight_free(cuda_ctx *c, struct cuda_weight *w)
{
	if (!w)
		return;
	cuda_buf_free(c, &w->buf);
	memset(w, 0, sizeof *w);
}

/* ---- kernels ------------------------------------------------------------------------------- */

/* 1 when [a, a+na) and [b, b+nb) (bytes) overlap. */
static int overlap(const void *a, size_t na, const void *b, size_t nb)
{
	const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
	return x < y + nb && y < x + na;
}

static int check_weight(cuda_ctx *c, const struct cuda_weight *w, const char *what)
{
	if (!w || !w->buf.ptr || !cu_quant_supported(w->type) || w->rows <= 0 || w->rows > MAX_ROWS ||
	    w->cols <= 0 || w->cols > MAX_COLS || w->row_bytes != ggml_row_bytes(w->type, (uint64_t)w->cols)) {
		CTX_ERR(c, "%s: not a weight made by cuda_weight_upload", what);
		return CUDA_BE_EINVAL;
	}
	return 0;
}

extern "C" int cuda_matvec(cuda_ctx *c, const struct cuda_weight *w, const float *x, float *y)
{
	int rc = enter(c);
	if (rc || (rc = check_weight(c, w, "cuda_matvec")))
		return rc;
	if (!x || !y) {
		CTX_ERR(c, "cuda_matvec: NULL vector");
		return CUDA_BE_EINVAL;
	}
	if (is_block_type(w->type) && ((uintptr_t)x & 15)) {
		CTX_ERR(c, "cuda_matvec: x must be 16-byte aligned for %s weights", ggml_type_name(w->type));
		return CUDA_BE_EINVAL;
	}
	if (overlap(x, (size_t)w->cols * sizeof(float), y, (size_t)w->rows * sizeof(float))) {
		CTX_ERR(c, "cuda_matvec: y overlaps x");
		return CUDA_BE_EINVAL;
	}
	cu_launch_matvec(c->stream, w->type, w->buf.ptr, w->row_bytes, w->rows, w->cols, x, y);
	return launched(c, "cuda_matvec");
}

extern "C" int cuda_dequant_rows(cuda_ctx *c, const struct cuda_weight *w, int64_t row0, int64_t n_rows, float *y)
{
	int rc = enter(c);
	if (rc || (rc = check_weight(c, w, "cuda_dequant_rows")))
		return rc;
	if (!y || row0 < 0 || n_rows <= 0 || row0 > w->rows - n_rows) {
		CTX_ERR(c, "cuda_dequant_rows: rows %lld..%lld outside 0..%lld", (long long)row0,
			(long long)(row0 + n_rows), (long long)w->rows);
		return CUDA_BE_EINVAL;
	}
	cu_launch_dequant_rows(c->stream, w->type, (const char *)w->buf.ptr + (size_t)row0 * w->row_bytes,
			       w->row_bytes, n_rows, w->cols, y);
	return launched(c, "cuda_dequant_rows");
}

extern "C" int cuda_rmsnorm(cuda_ctx *c, float *y, const float *x, const float *w, int64_t rows, int64_t n,
			    float eps)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!y || !x || rows <= 0 || rows > MAX_ROWS || n <= 0 || n > MAX_COLS || !(eps >= 0.0f)) {
		CTX_ERR(c, "cuda_rmsnorm: bad argument (%lld rows of %lld, eps %g)", (long long)rows, (long long)n,
			(double)eps);
		return CUDA_BE_EINVAL;
	}
	cu_launch_rmsnorm(c->stream, y, x, w, rows, n, eps);
	return launched(c, "cuda_rmsnorm");
}

static int rope(cuda_ctx *c, float *x, int n_tokens, int n_heads, int head_dim, int n_rot, uint32_t pos0,
		const uint32_t *pos_dev, float base, float scale, const float *freq_factors, enum cuda_rope_style style)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!x || n_tokens <= 0 || n_heads <= 0 || head_dim <= 0 || n_rot < 2 || (n_rot & 1) ||
	    n_rot > head_dim || !(base > 0.0f) || !isfinite(scale) ||
	    (style != CUDA_ROPE_NORM && style != CUDA_ROPE_NEOX) ||
	    (uint32_t)(n_tokens - 1) > UINT32_MAX - pos0) {
		CTX_ERR(c, "cuda_rope: bad argument (%d tokens, %d heads, head_dim %d, n_rot %d, pos %u, base %g)",
			n_tokens, n_heads, head_dim, n_rot, pos0, (double)base);
		return CUDA_BE_EINVAL;
	}
	/* the same powf as the CPU engine, so theta matches bit for bit */
	const float theta_scale = powf(base, -2.0f / (float)n_rot);
	cu_launch_rope(c->stream, x, n_tokens, n_heads, head_dim, n_rot, pos0, pos_dev, theta_scale, scale,
		       freq_factors, style == CUDA_ROPE_NEOX);
	return launched(c, "cuda_rope");
}

extern "C" int cuda_rope(cuda_ctx *c, float *x, int n_tokens, int n_heads, int head_dim, int n_rot, uint32_t pos0,
			 float base, float scale, const float *freq_factors, enum cuda_rope_style style)
{
	return rope(c, x, n_tokens, n_heads, head_dim, n_rot, pos0, NULL, base, scale, freq_factors, style);
}

extern "C" int cuda_rope_dev(cuda_ctx *c, float *x, int n_heads, int head_dim, int n_rot, const uint32_t *pos_dev,
			     float base, float scale, const float *freq_factors, enum cuda_rope_style style)
{
	if (!pos_dev) {
		c->err[0] = '\0';
		CTX_ERR(c, "cuda_rope_dev: NULL position");
		return CUDA_BE_EINVAL;
	}
	return rope(c, x, 1, n_heads, head_dim, n_rot, 0, pos_dev, base, scale, freq_factors, style);
}

extern "C" size_t cuda_kv_row_bytes(uint32_t type, int64_t kd)
{
	if (kd <= 0 || kd > MAX_COLS)
		return 0;
	if (type == GGML_TYPE_F16)
		return (size_t)kd * 2;
	if (type == GGML_TYPE_Q8_0 && kd % 32 == 0)
		return (size_t)kd / 32 * 34;
	return 0;
}

extern "C" int cuda_kv_store(cuda_ctx *c, void *cache, uint32_t type, int64_t kd, uint32_t pos, const uint32_t *pos_dev,
			     const float *x, int n_tok)
{
	int rc = enter(c);
	if (rc)
		return rc;
	const size_t rb = cuda_kv_row_bytes(type, kd);
	if (!cache || !x || n_tok <= 0 || rb == 0 || ((uintptr_t)cache & 1) ||
	    (!pos_dev && (uint32_t)(n_tok - 1) > UINT32_MAX - pos)) {
		CTX_ERR(c, "cuda_kv_store: bad argument (%s cache, %lld wide, %d rows at %u)", ggml_type_name(type),
			(long long)kd, n_tok, pos);
		return rb == 0 && cache && x ? CUDA_BE_EUNSUPPORTED : CUDA_BE_EINVAL;
	}
	cu_launch_kv_store(c->stream, type, cache, kd, pos, pos_dev, x, n_tok);
	return launched(c, "cuda_kv_store");
}

extern "C" int cuda_glu(cuda_ctx *c, float *gate, const float *up, int64_t n, enum cuda_act act)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!gate || !up || n <= 0 || (act != CUDA_ACT_SILU && act != CUDA_ACT_GELU_TANH)) {
		CTX_ERR(c, "cuda_glu: bad argument (n %lld, act %d)", (long long)n, (int)act);
		return CUDA_BE_EINVAL;
	}
	cu_launch_glu(c->stream, gate, up, n, act == CUDA_ACT_GELU_TANH);
	return launched(c, "cuda_glu");
}

extern "C" int cuda_softmax(cuda_ctx *c, float *y, const float *x, int64_t rows, int64_t n, float scale)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!y || !x || rows <= 0 || rows > MAX_ROWS || n <= 0 || n > MAX_COLS) {
		CTX_ERR(c, "cuda_softmax: bad argument (%lld rows of %lld)", (long long)rows, (long long)n);
		return CUDA_BE_EINVAL;
	}
	cu_launch_softmax(c->stream, y, x, rows, n, scale);
	return launched(c, "cuda_softmax");
}

extern "C" int cuda_add(cuda_ctx *c, float *y, const float *x, int64_t n)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!y || !x || n <= 0) {
		CTX_ERR(c, "cuda_add: bad argument (n %lld)", (long long)n);
		return CUDA_BE_EINVAL;
	}
	cu_launch_add(c->stream, y, x, n);
	return launched(c, "cuda_add");
}

extern "C" int cuda_add_rows(cuda_ctx *c, float *y, const float *b, int64_t rows, int64_t n)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!y || !b || rows <= 0 || rows > MAX_ROWS || n <= 0 || n > MAX_COLS || rows > INT64_MAX / n) {
		CTX_ERR(c, "cuda_add_rows: bad argument (%lld rows of %lld)", (long long)rows, (long long)n);
		return CUDA_BE_EINVAL;
	}
	cu_launch_add_rows(c->stream, y, b, rows, n);
	return launched(c, "cuda_add_rows");
}

extern "C" int cuda_copy2d(cuda_ctx *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
			   size_t height)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (width == 0 || height == 0)
		return CUDA_BE_OK;
	if (!dst || !src || dpitch < width || spitch < width) {
		CTX_ERR(c, "cuda_copy2d: bad argument (%zu x %zu, pitches %zu/%zu)", width, height, dpitch, spitch);
		return CUDA_BE_EINVAL;
	}
	cudaError_t e = cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice, c->stream);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, "cuda_copy2d");
}

extern "C" int cuda_f32_to_f16(cuda_ctx *c, void *dst, const float *x, int64_t n)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!dst || !x || n <= 0 || ((uintptr_t)dst & 1)) {
		CTX_ERR(c, "cuda_f32_to_f16: bad argument (n %lld)", (long long)n);
		return CUDA_BE_EINVAL;
	}
	cu_launch_f32_to_f16(c->stream, (uint16_t *)dst, x, n);
	return launched(c, "cuda_f32_to_f16");
}

/* Bytes of the partial results for n_split chunks; 0 on overflow. */
static size_t attn_ws_bytes(uint64_t n_split, int n_head, int head_dim)
{
	const uint64_t per = (uint64_t)n_head * ((uint64_t)head_dim + 2) * sizeof(float);
	if (n_split == 0 || n_split > SIZE_MAX / per)
		return 0;
	return (size_t)(n_split * per);
}

static int attn_shape_ok(int n_head, int n_head_kv, int head_dim)
{
	return n_head > 0 && n_head <= 65535 && n_head_kv > 0 && n_head % n_head_kv == 0 && head_dim > 0 && head_dim <= 1024;
}

extern "C" size_t cuda_attn_decode_workspace(int n_head, int n_head_kv, int head_dim, uint32_t n_ctx)
{
	if (!attn_shape_ok(n_head, n_head_kv, head_dim) || n_ctx == 0)
		return 0;
	const int max_chunk = cu_attn_chunk(n_head / n_head_kv, head_dim, CU_ATTN_SMEM);
	if (max_chunk == 0)
		return 0;
	return attn_ws_bytes(cu_attn_max_splits(max_chunk, n_ctx, n_head_kv), n_head, head_dim);
}

extern "C" int cuda_attn_decode(cuda_ctx *c, const struct cuda_attn_args *a)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!a || !a->q || !a->k || !a->v || !a->out || !a->workspace) {
		CTX_ERR(c, "cuda_attn_decode: NULL pointer");
		return CUDA_BE_EINVAL;
	}
	if (a->kv_type != GGML_TYPE_F16 && !(a->kv_type == GGML_TYPE_Q8_0 && a->head_dim % 32 == 0)) {
		CTX_ERR(c, "cuda_attn_decode: no kernel for a %s KV cache with head_dim %d", ggml_type_name(a->kv_type),
			a->head_dim);
		return CUDA_BE_EUNSUPPORTED;
	}
	if (!attn_shape_ok(a->n_head, a->n_head_kv, a->head_dim) || a->n == 0 ||
	    (a->pos_dev ? a->first != 0 : a->first > UINT32_MAX - a->n) ||
	    !isfinite(a->scale) || ((uintptr_t)a->k & 1) || ((uintptr_t)a->v & 1)) {
		CTX_ERR(c, "cuda_attn_decode: bad shape (%d heads, %d KV heads, head_dim %d, positions %u+%u)",
			a->n_head, a->n_head_kv, a->head_dim, a->first, a->n);
		return CUDA_BE_EINVAL;
	}
	const int max_chunk = cu_attn_chunk(a->n_head / a->n_head_kv, a->head_dim, CU_ATTN_SMEM);
	if (max_chunk == 0) {
		CTX_ERR(c, "cuda_attn_decode: %d query heads per KV head of %d dims exceed shared memory",
			a->n_head / a->n_head_kv, a->head_dim);
		return CUDA_BE_EUNSUPPORTED;
	}
	const int chunk = cu_attn_chunk_for(max_chunk, a->n, a->n_head_kv);
	const uint64_t n_split = ((uint64_t)a->n + (uint64_t)chunk - 1) / (uint64_t)chunk;
	if (n_split > CU_ATTN_MAX_SPLITS) {
		CTX_ERR(c, "cuda_attn_decode: %u positions is more than this kernel splits", a->n);
		return CUDA_BE_EUNSUPPORTED;
	}
	const size_t need = attn_ws_bytes(n_split, a->n_head, a->head_dim);
	if (need == 0 || a->workspace_bytes < need) {
		CTX_ERR(c, "cuda_attn_decode: workspace of %zu bytes, %zu needed", a->workspace_bytes, need);
		return CUDA_BE_EINVAL;
	}
	const size_t qo = (size_t)a->n_head * (size_t)a->head_dim * sizeof(float);
	if (overlap(a->q, qo, a->out, qo) || overlap(a->workspace, need, a->out, qo) ||
	    overlap(a->workspace, need, a->q, qo)) {
		CTX_ERR(c, "cuda_attn_decode: out, q and workspace must not overlap");
		return CUDA_BE_EINVAL;
	}
	cu_launch_attn_decode(c->stream, a, chunk);
	return launched(c, "cuda_attn_decode");
}

/* ---- batched work ------------------------------------------------------------------------------ */

extern "C" int cuda_gemm_available(cuda_ctx *c)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (cu_blas_ready(c, c->err, sizeof c->err) != 0)
		return CUDA_BE_EUNSUPPORTED;
	return CUDA_BE_OK;
}

extern "C" int cuda_dequant_f16(cuda_ctx *c, const struct cuda_weight *w, int64_t row0, int64_t n_rows, void *dst)
{
	int rc = enter(c);
	if (rc || (rc = check_weight(c, w, "cuda_dequant_f16")))
		return rc;
	if (!dst || ((uintptr_t)dst & 15) || row0 < 0 || n_rows <= 0 || row0 > w->rows - n_rows) {
		CTX_ERR(c, "cuda_dequant_f16: rows %lld..%lld outside 0..%lld or unaligned output", (long long)row0,
			(long long)(row0 + n_rows), (long long)w->rows);
		return CUDA_BE_EINVAL;
	}
	cu_launch_dequant_f16(c->stream, w->type, (const char *)w->buf.ptr + (size_t)row0 * w->row_bytes, w->row_bytes,
			      n_rows, w->cols, dst);
	return launched(c, "cuda_dequant_f16");
}

extern "C" size_t cuda_gemm_tile_bytes(const struct cuda_weight *w, size_t cap)
{
	if (!w || w->cols <= 0 || w->rows <= 0 || w->type == GGML_TYPE_F16)
		return 0;
	const size_t row = (size_t)w->cols * 2;
	size_t rows = cap / row;
	if (rows < 1)
		rows = 1;
	if (rows > (size_t)w->rows)
		rows = (size_t)w->rows;
	return rows * row;
}

extern "C" int cuda_gemm(cuda_ctx *c, const struct cuda_weight *w, const void *x16, int64_t n_tok, float *y,
			 void *tile, size_t tile_bytes)
{
	int rc = enter(c);
	if (rc || (rc = check_weight(c, w, "cuda_gemm")))
		return rc;
	if (!c->blas) {
		CTX_ERR(c, "cuda_gemm: cuBLAS is not set up (cuda_gemm_available)");
		return CUDA_BE_EUNSUPPORTED;
	}
	if (!x16 || !y || n_tok <= 0 || n_tok > INT32_MAX || w->cols > INT32_MAX || ((uintptr_t)x16 & 15)) {
		CTX_ERR(c, "cuda_gemm: bad argument (%lld tokens, %lld columns)", (long long)n_tok, (long long)w->cols);
		return CUDA_BE_EINVAL;
	}
	const size_t row = (size_t)w->cols * 2;
	int64_t tile_rows = w->rows;
	if (w->type != GGML_TYPE_F16) {
		if (!tile || ((uintptr_t)tile & 15) || tile_bytes < row) {
			CTX_ERR(c, "cuda_gemm: a %s weight needs an aligned tile of at least %zu bytes", ggml_type_name(w->type),
				row);
			return CUDA_BE_EINVAL;
		}
		tile_rows = (int64_t)(tile_bytes / row);
		if (overlap(tile, tile_bytes, y, (size_t)n_tok * (size_t)w->rows * sizeof(float)) ||
		    overlap(tile, tile_bytes, x16, (size_t)n_tok * row)) {
			CTX_ERR(c, "cuda_gemm: the tile overlaps x or y");
			return CUDA_BE_EINVAL;
		}
	}
	if (overlap(x16, (size_t)n_tok * row, y, (size_t)n_tok * (size_t)w->rows * sizeof(float))) {
		CTX_ERR(c, "cuda_gemm: y overlaps x");
		return CUDA_BE_EINVAL;
	}
	if (cu_gemm(c, w->type, w->buf.ptr, w->row_bytes, w->rows, w->cols, x16, n_tok, y, tile, tile_rows, c->err,
		    sizeof c->err) != 0)
		return CUDA_BE_ERUNTIME;
	return launched(c, "cuda_gemm");
}

extern "C" int cuda_attn_prefill_supported(int n_head, int n_head_kv, int head_dim, uint32_t kv_type)
{
	return attn_shape_ok(n_head, n_head_kv, head_dim) && head_dim % 2 == 0 && head_dim <= 256 &&
	       (kv_type == GGML_TYPE_F16 || (kv_type == GGML_TYPE_Q8_0 && head_dim % 32 == 0));
}

extern "C" int cuda_attn_prefill(cuda_ctx *c, const struct cuda_attn_prefill_args *a)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!a || !a->q || !a->k || !a->v || !a->out) {
		CTX_ERR(c, "cuda_attn_prefill: NULL pointer");
		return CUDA_BE_EINVAL;
	}
	if (!cuda_attn_prefill_supported(a->n_head, a->n_head_kv, a->head_dim, a->kv_type)) {
		CTX_ERR(c, "cuda_attn_prefill: no kernel for %d heads, %d KV heads, head_dim %d, %s cache", a->n_head,
			a->n_head_kv, a->head_dim, ggml_type_name(a->kv_type));
		return CUDA_BE_EUNSUPPORTED;
	}
	if (a->n_tok <= 0 || (uint32_t)(a->n_tok - 1) > UINT32_MAX - a->pos0 || !isfinite(a->scale) ||
	    ((uintptr_t)a->k & 1) || ((uintptr_t)a->v & 1) ||
	    (a->kv_type == GGML_TYPE_F16 && (((uintptr_t)a->k & 3) || ((uintptr_t)a->v & 3))) ||
	    (uint64_t)a->n_tok > (uint64_t)65535 * 16) {
		CTX_ERR(c, "cuda_attn_prefill: bad argument (%d tokens at %u)", a->n_tok, a->pos0);
		return CUDA_BE_EINVAL;
	}
	const size_t qo = (size_t)a->n_tok * (size_t)a->n_head * (size_t)a->head_dim * sizeof(float);
	if (overlap(a->q, qo, a->out, qo)) {
		CTX_ERR(c, "cuda_attn_prefill: out overlaps q");
		return CUDA_BE_EINVAL;
	}
	cu_launch_attn_prefill(c->stream, a);
	return launched(c, "cuda_attn_prefill");
}

/* ---- CUDA graphs -------------------------------------------------------------------------------------- */

struct cuda_graph {
	cudaGraphExec_t exec;
};

extern "C" int cuda_capture_begin(cuda_ctx *c)
{
	int rc = enter(c);
	if (rc)
		return rc;
	cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return ctx_fail(c, e, "cudaStreamBeginCapture");
	}
	return CUDA_BE_OK;
}

extern "C" int cuda_capture_end(cuda_ctx *c, cuda_graph **out)
{
	cudaGraph_t g = NULL;
	char keep[sizeof c->err];
	/* the message of a call that failed during the capture stays */
	snprintf(keep, sizeof keep, "%s", c->err);
	*out = NULL;
	int rc = enter(c);
	if (rc)
		return rc;
	cudaError_t e = cudaStreamEndCapture(c->stream, &g);
	if (e != cudaSuccess || !g) {
		cudaGetLastError();
		if (g)
			cudaGraphDestroy(g);
		if (keep[0])
			CTX_ERR(c, "capturing a CUDA graph: %s", keep);
		else
			ctx_fail(c, e == cudaSuccess ? cudaErrorStreamCaptureInvalidated : e, "cudaStreamEndCapture");
		return CUDA_BE_ERUNTIME;
	}
	cuda_graph *cg = (cuda_graph *)calloc(1, sizeof *cg);
	if (!cg) {
		cudaGraphDestroy(g);
		CTX_ERR(c, "out of host memory");
		return CUDA_BE_ENOMEM;
	}
	e = cudaGraphInstantiate(&cg->exec, g, 0);
	cudaGraphDestroy(g);
	if (e != cudaSuccess) {
		cudaGetLastError();
		free(cg);
		return ctx_fail(c, e, "cudaGraphInstantiate");
	}
	*out = cg;
	return CUDA_BE_OK;
}

extern "C" int cuda_graph_launch(cuda_ctx *c, cuda_graph *g)
{
	int rc = enter(c);
	if (rc)
		return rc;
	if (!g) {
		CTX_ERR(c, "cuda_graph_launch: NULL graph");
		return CUDA_BE_EINVAL;
	}
	cudaError_t e = cudaGraphLaunch(g->exec, c->stream);
	return e == cudaSuccess ? 0 : ctx_fail(c, e, "cudaGraphLaunch");
}

extern "C" void cuda_graph_free(cuda_ctx *c, cuda_graph *g)
{
	if (!g)
		return;
	if (c && enter(c) == 0)
		cudaStreamSynchronize(c->stream);
	cudaGraphExecDestroy(g->exec);
	free(g);
}

/* ---- measuring the device ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

extern "C" int cuda_membw(cuda_ctx *c, size_t bytes, int reps, double *gbps)
{
	int rc = enter(c);
	if (rc)
		return rc;
	bytes &= ~(size_t)15;
	if (!gbps || reps < 1 || reps > 1000 || bytes < ((size_t)1 << 20) || bytes > SIZE_MAX / 2) {
		CTX_ERR(c, "cuda_membw: bad argument (%zu bytes, %d reps)", bytes, reps);
		return CUDA_BE_EINVAL;
	}
	struct cuda_buf a = {NULL, 0, CUDA_MEM_SCRATCH}, b = {NULL, 0, CUDA_MEM_SCRATCH};
	cudaEvent_t e0 = NULL, e1 = NULL;
	double *t = (double *)calloc((size_t)reps, sizeof *t);
	if (!t) {
		CTX_ERR(c, "out of host memory");
		return CUDA_BE_ENOMEM;
	}
	if ((rc = cuda_buf_alloc(c, &a, bytes, CUDA_MEM_SCRATCH)) != 0 ||
	    (rc = cuda_buf_alloc(c, &b, bytes, CUDA_MEM_SCRATCH)) != 0)
		goto out;
	if ((rc = cuda_memzero(c, a.ptr, bytes)) != 0)
		goto out;
	cudaError_t e;
	if ((e = cudaEventCreate(&e0)) != cudaSuccess || (e = cudaEventCreate(&e1)) != cudaSuccess) {
		rc = ctx_fail(c, e, "cudaEventCreate");
		goto out;
	}
	cu_launch_copy16(c->stream, b.ptr, a.ptr, bytes / 16, c->sm_count); /* warm-up */
	for (int i = 0; i < reps; i++) {
		float ms = 0.0f;
		cudaEventRecord(e0, c->stream);
		cu_launch_copy16(c->stream, b.ptr, a.ptr, bytes / 16, c->sm_count);
		cudaEventRecord(e1, c->stream);
		if ((e = cudaEventSynchronize(e1)) != cudaSuccess || (e = cudaEventElapsedTime(&ms, e0, e1)) != cudaSuccess) {
			rc = ctx_fail(c, e, "timing the copy kernel");
			goto out;
		}
		t[i] = 2.0 * (double)bytes / ((double)ms * 1e-3) * 1e-9;
	}
	qsort(t, (size_t)reps, sizeof *t, cmp_double);
	*gbps = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
	rc = launched(c, "cuda_membw");
out:
	if (e0)
		cudaEventDestroy(e0);
	if (e1)
		cudaEventDestroy(e1);
	cuda_buf_free(c, &a);
	cuda_buf_free(c, &b);
	free(t);
	return rc;
}
