/*
 * gguf.c - hardened, memory-mapped reader for GGUF v2/v3 files.
 *
 * gguf_open() maps the whole file read-only and walks it once, front to
 * back, with a bounds-checked cursor: header, metadata (every value type,
 * arrays nested up to GGUF_MAX_NESTING deep), tensor infos, then the data
 * section.  Nothing is trusted: every count is checked against the bytes
 * that remain before anything is allocated for it, so the memory we
 * allocate is proportional to the real file size, never to a declared
 * count.  Each key remembers where its value lies in the mapping; string
 * arrays additionally get a compact index (one uint32 offset per element,
 * relative to the array's first byte) so gguf_arr_str() is O(1) even for
 * 150k-entry vocabularies.  Keys and tensor names are sorted once (an index
 * permutation) which gives both duplicate detection and O(log n) lookup.
 * Tensors are finally sorted by offset to prove that their data lies inside
 * the file, aligned and without overlap.  After a successful open the
 * handle is immutable; accessors never fail on an in-range index.
 */
#include "config.h"

#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian GGUF files on little-endian hosts only"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
/* Longest key name the format allows. */
#define GGUF_MAX_KEY_LEN 65535u

/* ---- tensor types ------------------------------------------------------ */

struct type_info {
	const char *name;
	uint32_t block_size; /* elements per block */
	uint32_t block_bytes;
};

static const struct type_info type_table[GGML_TYPE_COUNT] = {
	[GGML_TYPE_F32] = {"F32", 1, 4},
	[GGML_TYPE_F16] = {"F16", 1, 2},
	[GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},
	[GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
	[GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},
	[GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
	[GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},
	[GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
	[GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},
	[GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
	[GGML_TYPE_Q4_K] = {"Q4_K", 256, 144},
	[GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
	[GGML_TYPE_Q6_K] = {"Q6_K", 256, 210},
	[GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
	[GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
	[GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
	[GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
	[GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
	[GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
	[GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
	[GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
	[GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
	[GGML_TYPE_I8] = {"I8", 1, 1},
	[GGML_TYPE_I16] = {"I16", 1, 2},
	[GGML_TYPE_I32] = {"I32", 1, 4},
	[GGML_TYPE_I64] = {"I64", 1, 8},
	[GGML_TYPE_F64] = {"F64", 1, 8},
	[GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
	[GGML_TYPE_BF16] = {"BF16", 1, 2},
	[GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
	[GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
	[GGML_TYPE_MXFP4] = {"MXFP4", 32, 17},
	[GGML_TYPE_NVFP4] = {"NVFP4", 64, 36},
	[GGML_TYPE_Q1_0] = {"Q1_0", 128, 18},
	[GGML_TYPE_Q2_0] = {"Q2_0", 64, 18},
};

uint32_t ggml_type_block_size(uint32_t type)
{
	return type < GGML_TYPE_COUNT ? type_table[type].block_size : 0;
}

uint32_t ggml_type_block_bytes(uint32_t type)
{
	return type < GGML_TYPE_COUNT ? type_table[type].block_bytes : 0;
}

const char *ggml_type_name(uint32_t type)
{
	if (type < GGML_TYPE_COUNT && type_table[type].name)
		return type_table[type].name;
	return "?";
}

size_t ggml_row_bytes(uint32_t type, uint64_t n)
{
	uint32_t bs = ggml_type_block_size(type);
	if (bs == 0 || n % bs != 0)
		return 0;
	uint64_t blocks = n / bs, bytes;
	if (__builtin_mul_overflow(blocks, (uint64_t)ggml_type_block_bytes(type), &bytes) ||
	    bytes > SIZE_MAX)
		return 0;
	return (size_t)bytes;
}

/* ---- metadata value types ---------------------------------------------- */

/* Byte size of a scalar value type; 0 for string, array and unknown. */
static uint32_t vtype_size(uint32_t t)
{
	static const uint8_t sizes[GGUF_VT_COUNT] = {
		[GGUF_VT_UINT8] = 1,   [GGUF_VT_INT8] = 1,    [GGUF_VT_UINT16] = 2,
		[GGUF_VT_INT16] = 2,   [GGUF_VT_UINT32] = 4,  [GGUF_VT_INT32] = 4,
		[GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,    [GGUF_VT_UINT64] = 8,
		[GGUF_VT_INT64] = 8,   [GGUF_VT_FLOAT64] = 8,
	};
	return t < GGUF_VT_COUNT ? sizes[t] : 0;
}

static const char *vtype_name(uint32_t t)
{
	static const char *const names[GGUF_VT_COUNT] = {
		"u8", "i8", "u16", "i16", "u32", "i32", "f32",
		"bool", "string", "array", "u64", "i64", "f64",
	};
	return t < GGUF_VT_COUNT ? names[t] : "?";
}

/* ---- the handle -------------------------------------------------------- */

struct gguf_kv {
	struct gguf_str key;
	uint32_t type;
	uint32_t arr_type;     /* element type for arrays, else 0 */
	uint64_t arr_n;        /* element count for arrays, else 0 */
	const uint8_t *val;    /* value bytes (for arrays: first element) */
	uint32_t *str_off;     /* string arrays: element offsets from val */
};

struct gguf_file {
	char *path;             /* owned copy, for messages and gguf_path() */
	const uint8_t *base;
	uint64_t size;
	bool mapped;            /* base came from mmap (unmap on close) */
	uint32_t version;
	uint32_t alignment;
	uint64_t data_offset;
	uint64_t n_kv;
	struct gguf_kv *kv;
	uint32_t *kv_sorted;    /* indices of kv sorted by key */
	uint64_t n_tensors;
	struct gguf_tensor *tensors;
	uint32_t *t_sorted;     /* indices of tensors sorted by name */
	uint64_t *t_info_at;    /* file offset of each tensor info (messages) */
	/* split model (gguf_open_model): the other parts, whose tensors were
	 * appended to this handle's tables */
	struct gguf_file **parts;
	uint32_t n_parts;
	uint64_t total_size;    /* bytes of every part (0: just this one) */
};

/* Parse state: a cursor over the mapping plus the caller's error buffer. */
struct cursor {
	gguf_file *f;
	uint64_t pos;
	char *err;
	size_t errlen;
	bool nomem;      /* the failure was for want of memory */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Copies S into OUT as printable ASCII (escaping the rest), truncated;
 * file bytes must never reach a terminal unfiltered. */
static void sanitize(struct gguf_str s, char *out, size_t outlen)
{
	size_t o = 0;
	uint64_t n = s.len > 64 ? 64 : s.len;
	for (uint64_t i = 0; i < n && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s.ptr[i];
		if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
	}
	if (s.len > n && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

static bool fail_at(struct cursor *c, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail_at(struct cursor *c, uint64_t off, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	set_err(c->err, c->errlen, "%s: offset %" PRIu64 ": %s", c->f->path, off, msg);
	return false;
}

/* An allocation failed: MSG (a constant) and errno ENOMEM for the caller. */
static bool fail_nomem(struct cursor *c, uint64_t off, const char *msg)
{
	c->nomem = true;
	return fail_at(c, off, "%s", msg);
}

static bool fail_key(struct cursor *c, struct gguf_str key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail_key(struct cursor *c, struct gguf_str key, const char *fmt, ...)
{
	char msg[256], name[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sanitize(key, name, sizeof name);
	set_err(c->err, c->errlen, "%s: key '%s': %s", c->f->path, name, msg);
	return false;
}

static uint64_t remaining(const struct cursor *c)
{
	return c->f->size - c->pos;
}

static bool need(struct cursor *c, uint64_t n, const char *what)
{
	if (n > remaining(c))
		return fail_at(c, c->pos, "truncated %s (need %" PRIu64 " bytes, %" PRIu64 " left)",
			       what, n, remaining(c));
	return true;
}

static bool rd_u32(struct cursor *c, uint32_t *v, const char *what)
{
	if (!need(c, 4, what))
		return false;
	memcpy(v, c->f->base + c->pos, 4);
	c->pos += 4;
	return true;
}

static bool rd_u64(struct cursor *c, uint64_t *v, const char *what)
{
	if (!need(c, 8, what))
		return false;
	memcpy(v, c->f->base + c->pos, 8);
	c->pos += 8;
	return true;
}

/* A length-prefixed string; MAX caps its length. */
static bool rd_str(struct cursor *c, struct gguf_str *s, uint64_t max, const char *what)
{
	uint64_t at = c->pos, len;
	if (!rd_u64(c, &len, what))
		return false;
	if (len > max)
		return fail_at(c, at, "%s length %" PRIu64 " exceeds the limit of %" PRIu64,
			       what, len, max);
	if (!need(c, len, what))
		return false;
	s->ptr = (const char *)c->f->base + c->pos;
	s->len = len;
	c->pos += len;
	return true;
}

/* Validates and skips one value of type T (already read) at depth DEPTH. */
static bool skip_value(struct cursor *c, uint32_t t, unsigned depth);

static bool skip_array_body(struct cursor *c, uint32_t et, uint64_t n, unsigned depth,
			    uint64_t at)
{
	if (n > GGUF_MAX_ARRAY)
		return fail_at(c, at, "array of %" PRIu64 " elements exceeds the limit of %u", n,
			       (unsigned)GGUF_MAX_ARRAY);
	uint32_t es = vtype_size(et);
	if (es) {
		if (!need(c, n * es, "array data"))
			return false;
		if (et == GGUF_VT_BOOL)
			for (uint64_t i = 0; i < n; i++)
				if (c->f->base[c->pos + i] > 1)
					return fail_at(c, c->pos + i, "bool value %u is not 0 or 1",
						       c->f->base[c->pos + i]);
		c->pos += n * es;
		return true;
	}
	/* Strings take >= 8 bytes and arrays >= 12 each: a count beyond what
	 * remains is rejected before walking, so the walk is linear in size. */
	uint64_t min = et == GGUF_VT_STRING ? 8 : 12;
	if (n > remaining(c) / min)
		return fail_at(c, at, "array of %" PRIu64 " %s elements cannot fit in the %" PRIu64
			       " bytes left", n, vtype_name(et), remaining(c));
	for (uint64_t i = 0; i < n; i++)
		if (!skip_value(c, et, depth))
			return false;
	return true;
}

static bool skip_value(struct cursor *c, uint32_t t, unsigned depth)
{
	uint64_t at = c->pos;
	uint32_t es = vtype_size(t);
	if (es) {
		if (!need(c, es, "value"))
			return false;
		if (t == GGUF_VT_BOOL && c->f->base[c->pos] > 1)
			return fail_at(c, c->pos, "bool value %u is not 0 or 1", c->f->base[c->pos]);
		c->pos += es;
		return true;
	}
	if (t == GGUF_VT_STRING) {
		struct gguf_str s;
		return rd_str(c, &s, GGUF_MAX_STRING, "string");
	}
	if (t != GGUF_VT_ARRAY)
		return fail_at(c, at, "invalid value type %" PRIu32, t);
	if (depth >= GGUF_MAX_NESTING)
		return fail_at(c, at, "arrays nested deeper than %d", GGUF_MAX_NESTING);
	uint32_t et;
	uint64_t n;
	if (!rd_u32(c, &et, "array type") || !rd_u64(c, &n, "array length"))
		return false;
	if (et >= GGUF_VT_COUNT)
		return fail_at(c, at, "invalid array element type %" PRIu32, et);
	return skip_array_body(c, et, n, depth + 1, at);
}

/* Builds the O(1) index of a top-level string array whose N elements start
 * at the cursor, validating and skipping them. */
static bool index_str_array(struct cursor *c, struct gguf_kv *kv, uint64_t at)
{
	uint64_t n = kv->arr_n;
	if (n > GGUF_MAX_ARRAY)
		return fail_at(c, at, "array of %" PRIu64 " elements exceeds the limit of %u", n,
			       (unsigned)GGUF_MAX_ARRAY);
	if (n > remaining(c) / 8)
		return fail_at(c, at, "array of %" PRIu64 " strings cannot fit in the %" PRIu64
			       " bytes left", n, remaining(c));
	if (n == 0)
		return true;
	kv->str_off = eng_malloc(n * sizeof *kv->str_off);
	if (!kv->str_off) {
		c->nomem = true;
		return fail_at(c, at, "out of memory indexing %" PRIu64 " strings", n);
	}
	uint64_t start = c->pos;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t rel = c->pos - start;
		if (rel > UINT32_MAX)
			return fail_at(c, c->pos, "string array larger than 4 GiB");
		kv->str_off[i] = (uint32_t)rel;
		struct gguf_str s;
		if (!rd_str(c, &s, GGUF_MAX_STRING, "string"))
			return false;
	}
	return true;
}

static int cmp_str(struct gguf_str a, struct gguf_str b)
{
	uint64_t n = a.len < b.len ? a.len : b.len;
	int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
	if (r)
		return r;
	return a.len < b.len ? -1 : a.len > b.len;
}

/* Sorts an index permutation of N names (reached through GET) with a
 * bottom-up merge sort: qsort has no context argument in C11, and
 * we want no globals. */
typedef struct gguf_str (*name_fn)(const gguf_file *f, uint32_t i);

static bool sort_names(const gguf_file *f, uint32_t *idx, uint64_t n, name_fn get)
{
	for (uint64_t i = 0; i < n; i++)
		idx[i] = (uint32_t)i;
	if (n < 2)
		return true;
	uint32_t *tmp = eng_malloc(n * sizeof *tmp);
	if (!tmp)
		return false;
	uint32_t *src = idx, *dst = tmp;
	for (uint64_t w = 1; w < n; w *= 2) {
		for (uint64_t lo = 0; lo < n; lo += 2 * w) {
			uint64_t mid = lo + w < n ? lo + w : n;
			uint64_t hi = lo + 2 * w < n ? lo + 2 * w : n;
			uint64_t a = lo, b = mid, o = lo;
			while (a < mid && b < hi)
				dst[o++] = cmp_str(get(f, src[b]), get(f, src[a])) < 0 ? src[b++]
										 : src[a++];
			while (a < mid)
				dst[o++] = src[a++];
			while (b < hi)
				dst[o++] = src[b++];
		}
		uint32_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != idx)
		memcpy(idx, src, n * sizeof *idx);
	free(tmp);
	return true;
}

static struct gguf_str kv_name(const gguf_file *f, uint32_t i)
{
	return f->kv[i].key;
}

static struct gguf_str tensor_name(const gguf_file *f, uint32_t i)
{
	return f->tensors[i].name;
}

/* Binary search in a sorted permutation; -1 when absent. */
static int64_t find_sorted(const gguf_file *f, const uint32_t *idx, uint64_t n, name_fn get,
			   const char *name)
{
	if (!name)
		return -1;
	struct gguf_str want = {name, strlen(name)};
	uint64_t lo = 0, hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int r = cmp_str(get(f, idx[mid]), want);
		if (r == 0)
			return idx[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static bool parse_kv(struct cursor *c)
{
	gguf_file *f = c->f;
	for (uint64_t i = 0; i < f->n_kv; i++) {
		struct gguf_kv *kv = &f->kv[i];
		uint64_t at = c->pos;
		if (!rd_str(c, &kv->key, GGUF_MAX_KEY_LEN, "key"))
			return false;
		if (kv->key.len == 0)
			return fail_at(c, at, "empty key");
		if (!rd_u32(c, &kv->type, "value type"))
			return false;
		if (kv->type >= GGUF_VT_COUNT)
			return fail_key(c, kv->key, "invalid value type %" PRIu32 " at offset %" PRIu64,
					kv->type, c->pos - 4);
		uint64_t vat = c->pos;
		if (kv->type != GGUF_VT_ARRAY) {
			kv->val = f->base + c->pos;
			if (!skip_value(c, kv->type, 0))
				return false;
			continue;
		}
		if (!rd_u32(c, &kv->arr_type, "array type") || !rd_u64(c, &kv->arr_n, "array length"))
			return false;
		if (kv->arr_type >= GGUF_VT_COUNT)
			return fail_key(c, kv->key, "invalid array element type %" PRIu32
					" at offset %" PRIu64, kv->arr_type, vat);
		kv->val = f->base + c->pos;
		if (kv->arr_type == GGUF_VT_STRING) {
			if (!index_str_array(c, kv, vat))
				return false;
		} else if (!skip_array_body(c, kv->arr_type, kv->arr_n, 1, vat)) {
			return false;
		}
	}
	if (!sort_names(f, f->kv_sorted, f->n_kv, kv_name))
		return fail_nomem(c, c->pos, "out of memory sorting keys");
	for (uint64_t i = 1; i < f->n_kv; i++)
		if (cmp_str(f->kv[f->kv_sorted[i - 1]].key, f->kv[f->kv_sorted[i]].key) == 0)
			return fail_key(c, f->kv[f->kv_sorted[i]].key, "duplicate key");
	return true;
}

static bool parse_alignment(struct cursor *c)
{
	gguf_file *f = c->f;
	f->alignment = GGUF_DEFAULT_ALIGNMENT;
	int64_t k = find_sorted(f, f->kv_sorted, f->n_kv, kv_name, "general.alignment");
	if (k < 0)
		return true;
	const struct gguf_kv *kv = &f->kv[k];
	if (kv->type != GGUF_VT_UINT32)
		return fail_key(c, kv->key, "must be u32, not %s", vtype_name(kv->type));
	uint32_t a;
	memcpy(&a, kv->val, 4);
	if (a == 0 || (a & (a - 1)) != 0)
		return fail_key(c, kv->key, "alignment %" PRIu32 " is not a power of two", a);
	f->alignment = a;
	return true;
}

static bool fail_tensor(struct cursor *c, uint64_t at, struct gguf_str name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool fail_tensor(struct cursor *c, uint64_t at, struct gguf_str name, const char *fmt, ...)
{
	char msg[256], nm[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sanitize(name, nm, sizeof nm);
	return fail_at(c, at, "tensor '%s': %s", nm, msg);
}

static bool parse_tensor_infos(struct cursor *c)
{
	gguf_file *f = c->f;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		struct gguf_tensor *t = &f->tensors[i];
		uint64_t at = c->pos;
		f->t_info_at[i] = at;
		if (!rd_str(c, &t->name, GGUF_MAX_KEY_LEN, "tensor name"))
			return false;
		if (t->name.len == 0)
			return fail_at(c, at, "empty tensor name");
		if (!rd_u32(c, &t->n_dims, "tensor n_dims"))
			return false;
		if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
			return fail_tensor(c, at, t->name, "n_dims %" PRIu32 " is not in 1..%d",
					   t->n_dims, GGUF_MAX_DIMS);
		uint64_t ne = 1;
		for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
			t->ne[d] = 1;
			if (d >= t->n_dims)
				continue;
			if (!rd_u64(c, &t->ne[d], "tensor shape"))
				return false;
			if (t->ne[d] > INT64_MAX)
				return fail_tensor(c, at, t->name, "dimension %" PRIu32 " is negative", d);
			if (__builtin_mul_overflow(ne, t->ne[d], &ne) || ne > INT64_MAX)
				return fail_tensor(c, at, t->name, "shape product overflows");
		}
		t->n_elements = ne;
		if (!rd_u32(c, &t->type, "tensor type"))
			return false;
		uint32_t bs = ggml_type_block_size(t->type);
		if (bs == 0)
			return fail_tensor(c, at, t->name, "unknown tensor type %" PRIu32, t->type);
		if (t->ne[0] % bs != 0)
			return fail_tensor(c, at, t->name, "row length %" PRIu64
					   " is not a multiple of the %s block size %" PRIu32,
					   t->ne[0], ggml_type_name(t->type), bs);
		uint64_t row, rows = t->ne[0] ? ne / t->ne[0] : 0;
		if (__builtin_mul_overflow(t->ne[0] / bs, (uint64_t)ggml_type_block_bytes(t->type),
					   &row) ||
		    __builtin_mul_overflow(row, rows, &t->size))
			return fail_tensor(c, at, t->name, "byte size overflows");
		if (!rd_u64(c, &t->offset, "tensor offset"))
			return false;
		if (t->offset % f->alignment != 0)
			return fail_tensor(c, at, t->name, "data offset %" PRIu64
					   " is not aligned to %" PRIu32, t->offset, f->alignment);
	}
	return true;
}

/* Data placement: inside the file, and no two tensors overlapping. */
static bool check_tensor_data(struct cursor *c)
{
	gguf_file *f = c->f;
	uint64_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
	f->data_offset = c->pos + pad;
	if (f->n_tensors == 0)
		return true;
	if (f->data_offset > f->size)
		return fail_at(c, c->pos, "data section starts past the end of the file");
	uint64_t avail = f->size - f->data_offset;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		struct gguf_tensor *t = &f->tensors[i];
		if (t->offset > avail || t->size > avail - t->offset)
			return fail_tensor(c, f->data_offset + (t->offset < avail ? t->offset : avail),
					   t->name, "data (%" PRIu64 " bytes at data offset %" PRIu64
					   ") extends past the end of the file", t->size, t->offset);
		t->data = f->base + f->data_offset + t->offset;
	}
	/* Sort by offset (reusing the name-sort machinery on offsets would be
	 * awkward); a simple merge sort of indices. */
	uint64_t n = f->n_tensors;
	uint32_t *idx = eng_malloc(n * sizeof *idx), *tmp = eng_malloc(n * sizeof *tmp);
	if (!idx || !tmp) {
		free(idx);
		free(tmp);
		return fail_nomem(c, c->pos, "out of memory checking tensor placement");
	}
	for (uint64_t i = 0; i < n; i++)
		idx[i] = (uint32_t)i;
	uint32_t *src = idx, *dst = tmp;
	for (uint64_t w = 1; w < n; w *= 2) {
		for (uint64_t lo = 0; lo < n; lo += 2 * w) {
			uint64_t mid = lo + w < n ? lo + w : n;
			uint64_t hi = lo + 2 * w < n ? lo + 2 * w : n;
			uint64_t a = lo, b = mid, o = lo;
			while (a < mid && b < hi)
				dst[o++] = f->tensors[src[b]].offset < f->tensors[src[a]].offset ? src[b++]
												  : src[a++];
			while (a < mid)
				dst[o++] = src[a++];
			while (b < hi)
				dst[o++] = src[b++];
		}
		uint32_t *t = src;
		src = dst;
		dst = t;
	}
	bool ok = true;
	for (uint64_t i = 1; i < n && ok; i++) {
		const struct gguf_tensor *p = &f->tensors[src[i - 1]], *q = &f->tensors[src[i]];
		/* Empty tensors occupy nothing and cannot overlap. */
		if (p->size && q->size && p->offset + p->size > q->offset) {
			char pn[300];
			sanitize(p->name, pn, sizeof pn);
			ok = fail_tensor(c, f->data_offset + q->offset, q->name,
					 "data overlaps tensor '%s'", pn);
		}
	}
	free(idx);
	free(tmp);
	return ok;
}

static bool parse(struct cursor *c)
{
	gguf_file *f = c->f;
	if (f->size < 4 || memcmp(f->base, GGUF_MAGIC, 4) != 0)
		return fail_at(c, 0, "not a GGUF file (bad magic)");
	c->pos = 4;
	if (!rd_u32(c, &f->version, "version"))
		return false;
	if (f->version == 1)
		return fail_at(c, 4, "GGUF version 1 is not supported (re-convert the model)");
	if (f->version != 2 && f->version != 3) {
		uint32_t sw = __builtin_bswap32(f->version);
		if (sw == 2 || sw == 3)
			return fail_at(c, 4, "big-endian GGUF files are not supported");
		return fail_at(c, 4, "unsupported GGUF version %" PRIu32, f->version);
	}
	uint64_t nt_at = c->pos;
	if (!rd_u64(c, &f->n_tensors, "tensor count") || !rd_u64(c, &f->n_kv, "key count"))
		return false;
	if (f->n_tensors > GGUF_MAX_TENSORS)
		return fail_at(c, nt_at, "tensor count %" PRIu64 " exceeds the limit of %d",
			       f->n_tensors, GGUF_MAX_TENSORS);
	if (f->n_kv > GGUF_MAX_KEYS)
		return fail_at(c, nt_at + 8, "key count %" PRIu64 " exceeds the limit of %d", f->n_kv,
			       GGUF_MAX_KEYS);
	/* A key takes >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8. */
	if (f->n_kv > remaining(c) / 14)
		return fail_at(c, nt_at + 8, "key count %" PRIu64 " cannot fit in the file", f->n_kv);
	if (f->n_tensors > remaining(c) / 33)
		return fail_at(c, nt_at, "tensor count %" PRIu64 " cannot fit in the file",
			       f->n_tensors);
	f->kv = eng_calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
	f->kv_sorted = eng_calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv_sorted);
	f->tensors = eng_calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
	f->t_sorted = eng_calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->t_sorted);
	f->t_info_at = eng_calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->t_info_at);
	if (!f->kv || !f->kv_sorted || !f->tensors || !f->t_sorted || !f->t_info_at)
		return fail_nomem(c, nt_at, "out of memory");
	if (!parse_kv(c) || !parse_alignment(c) || !parse_tensor_infos(c))
		return false;
	if (!sort_names(f, f->t_sorted, f->n_tensors, tensor_name))
		return fail_nomem(c, c->pos, "out of memory sorting tensors");
	for (uint64_t i = 1; i < f->n_tensors; i++) {
		uint32_t a = f->t_sorted[i - 1], b = f->t_sorted[i];
		if (cmp_str(f->tensors[a].name, f->tensors[b].name) == 0)
			return fail_tensor(c, f->t_info_at[a > b ? a : b], f->tensors[b].name,
					   "duplicate tensor name");
	}
	return check_tensor_data(c);
}

void gguf_close(gguf_file *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->n_parts; i++)
		gguf_close(f->parts[i]);
	free(f->parts);
	if (f->kv)
		for (uint64_t i = 0; i < f->n_kv; i++)
			free(f->kv[i].str_off);
	free(f->kv);
	free(f->kv_sorted);
	free(f->tensors);
	free(f->t_sorted);
	free(f->t_info_at);
	if (f->mapped && f->size)
		munmap((void *)f->base, (size_t)f->size);
	free(f->path);
	free(f);
}

/* Takes ownership of nothing; on failure frees F (unmapping if mapped). */
static gguf_file *finish_open(gguf_file *f, char *err, size_t errlen)
{
	struct cursor c = {.f = f, .pos = 0, .err = err, .errlen = errlen};
	if (!parse(&c)) {
		gguf_close(f);
		errno = c.nomem ? ENOMEM : EINVAL;
		return NULL;
	}
	if (err && errlen)
		err[0] = '\0';
	return f;
}

gguf_file *gguf_open_memory(const void *buf, size_t len, const char *name, char *err,
			    size_t errlen)
{
	if (!name)
		name = "(memory)";
	gguf_file *f = eng_calloc(1, sizeof *f);
	if (!f || !(f->path = eng_strdup(name))) {
		free(f);
		set_err(err, errlen, "%s: out of memory", name);
		errno = ENOMEM;
		return NULL;
	}
	f->base = buf;
	f->size = buf ? len : 0;
	return finish_open(f, err, errlen);
}

gguf_file *gguf_open(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		set_err(err, errlen, "%s: file too large to map", path);
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	gguf_file *f = eng_calloc(1, sizeof *f);
	if (!f || !(f->path = eng_strdup(path))) {
		free(f);
		close(fd);
		set_err(err, errlen, "%s: out of memory", path);
		errno = ENOMEM;
		return NULL;
	}
	f->size = (uint64_t)st.st_size;
	if (f->size > 0) {
		void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			set_err(err, errlen, "%s: mmap: %s", path, strerror(errno));
			close(fd);
			free(f->path);
			free(f);
			return NULL;
		}
		f->base = p;
		f->mapped = true;
		/* The parse reads the header front to back right now; tensor
		 * data waits for gguf_prefetch() or the engine's first touch. */
		madvise(p, (size_t)(f->size < (8u << 20) ? f->size : (8u << 20)), MADV_WILLNEED);
	}
	close(fd);
	return finish_open(f, err, errlen);
}

void gguf_prefetch(const gguf_file *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->n_parts; i++)
		gguf_prefetch(f->parts[i]);
	if (!f->mapped || f->data_offset >= f->size)
		return;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)(f->base + f->data_offset) & ~(page - 1);
	uintptr_t end = (uintptr_t)(f->base + f->size);
	madvise((void *)start, end - start, MADV_WILLNEED);
}

void gguf_release(const gguf_file *f, const void *p, size_t n)
{
	if (!f || n == 0)
		return;
	for (uint32_t i = 0; i < f->n_parts; i++)
		gguf_release(f->parts[i], p, n);
	const uint8_t *a = p, *b = a + n;
	if (!f->mapped || a < f->base || b > f->base + f->size)
		return;
	const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	const uintptr_t lo = ((uintptr_t)a + page - 1) & ~(page - 1), hi = (uintptr_t)b & ~(page - 1);
	if (hi > lo)
		madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ---- accessors --------------------------------------------------------- */

const char *gguf_path(const gguf_file *f)
{
	return f->path;
}

uint32_t gguf_version(const gguf_file *f)
{
	return f->version;
}

uint64_t gguf_file_size(const gguf_file *f)
{
	if (f->total_size)
		return f->total_size;
	return f->size;
}

uint32_t gguf_alignment(const gguf_file *f)
{
	return f->alignment;
}

uint64_t gguf_data_offset(const gguf_file *f)
{
	return f->data_offset;
}

const void *gguf_base(const gguf_file *f)
{
	return f->base;
}

uint64_t gguf_n_kv(const gguf_file *f)
{
	return f->n_kv;
}

int64_t gguf_find_key(const gguf_file *f, const char *key)
{
	return find_sorted(f, f->kv_sorted, f->n_kv, kv_name, key);
}

struct gguf_str gguf_key_name(const gguf_file *f, uint64_t i)
{
	if (i >= f->n_kv)
		return (struct gguf_str){NULL, 0};
	return f->kv[i].key;
}

uint32_t gguf_kv_type(const gguf_file *f, uint64_t i)
{
	return i < f->n_kv ? f->kv[i].type : GGUF_VT_COUNT;
}

uint32_t gguf_arr_type(const gguf_file *f, uint64_t i)
{
	return i < f->n_kv && f->kv[i].type == GGUF_VT_ARRAY ? f->kv[i].arr_type : 0;
}

uint64_t gguf_arr_len(const gguf_file *f, uint64_t i)
{
	return i < f->n_kv && f->kv[i].type == GGUF_VT_ARRAY ? f->kv[i].arr_n : 0;
}

static const struct gguf_kv *kv_of(const gguf_file *f, const char *key, uint32_t type)
{
	int64_t i = gguf_find_key(f, key);
	if (i < 0 || f->kv[i].type != type)
		return NULL;
	return &f->kv[i];
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_UINT32);
	if (!kv)
		return false;
	memcpy(out, kv->val, 4);
	return true;
}

bool gguf_get_i32(const gguf_file *f, const char *key, int32_t *out)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_INT32);
	if (!kv)
		return false;
	memcpy(out, kv->val, 4);
	return true;
}

/* Scalar integer value as signed 128-bit-free pair: returns false for
 * non-integers; *neg set for negative signed values. */
static bool int_value(uint32_t type, const uint8_t *p, uint64_t *u, bool *neg)
{
	*neg = false;
	switch (type) {
	case GGUF_VT_UINT8: *u = p[0]; return true;
	case GGUF_VT_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; return true; }
	case GGUF_VT_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; return true; }
	case GGUF_VT_UINT64: memcpy(u, p, 8); return true;
	case GGUF_VT_INT8: { int8_t v; memcpy(&v, p, 1); *neg = v < 0; *u = (uint64_t)(int64_t)v; return true; }
	case GGUF_VT_INT16: { int16_t v; memcpy(&v, p, 2); *neg = v < 0; *u = (uint64_t)(int64_t)v; return true; }
	case GGUF_VT_INT32: { int32_t v; memcpy(&v, p, 4); *neg = v < 0; *u = (uint64_t)(int64_t)v; return true; }
	case GGUF_VT_INT64: { int64_t v; memcpy(&v, p, 8); *neg = v < 0; *u = (uint64_t)v; return true; }
	default: return false;
	}
}

bool gguf_get_uint(const gguf_file *f, const char *key, uint64_t *out)
{
	int64_t i = gguf_find_key(f, key);
	if (i < 0)
		return false;
	uint64_t u;
	bool neg;
	if (!int_value(f->kv[i].type, f->kv[i].val, &u, &neg) || neg)
		return false;
	*out = u;
	return true;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_FLOAT32);
	if (!kv)
		return false;
	memcpy(out, kv->val, 4);
	return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_BOOL);
	if (!kv)
		return false;
	*out = kv->val[0] != 0;
	return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, struct gguf_str *out)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_STRING);
	if (!kv)
		return false;
	uint64_t len;
	memcpy(&len, kv->val, 8);
	out->ptr = (const char *)kv->val + 8;
	out->len = len;
	return true;
}

bool gguf_get_arr(const gguf_file *f, const char *key, uint32_t want_type, uint64_t *n,
		  const void **data)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_ARRAY);
	if (!kv || kv->arr_type != want_type)
		return false;
	*n = kv->arr_n;
	*data = kv->val;
	return true;
}

bool gguf_get_arr_str_n(const gguf_file *f, const char *key, uint64_t *n)
{
	const struct gguf_kv *kv = kv_of(f, key, GGUF_VT_ARRAY);
	if (!kv || kv->arr_type != GGUF_VT_STRING)
		return false;
	*n = kv->arr_n;
	return true;
}

struct gguf_str gguf_arr_str_at(const gguf_file *f, int64_t key_index, uint64_t j)
{
	struct gguf_str s = {NULL, 0};
	if (key_index < 0 || (uint64_t)key_index >= f->n_kv)
		return s;
	const struct gguf_kv *kv = &f->kv[key_index];
	if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING || j >= kv->arr_n)
		return s;
	const uint8_t *p = kv->val + kv->str_off[j];
	memcpy(&s.len, p, 8);
	s.ptr = (const char *)p + 8;
	return s;
}

struct gguf_str gguf_arr_str(const gguf_file *f, const char *key, uint64_t j)
{
	return gguf_arr_str_at(f, gguf_find_key(f, key), j);
}

/* ---- display ----------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	if (b->len + 1 >= b->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->len = b->len + (size_t)n < b->cap ? b->len + (size_t)n : b->cap - 1;
}

static void sb_quoted(struct sbuf *b, struct gguf_str s, size_t max)
{
	sb_printf(b, "\"");
	uint64_t n = s.len < max ? s.len : max;
	for (uint64_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];
		if (ch == '"' || ch == '\\')
			sb_printf(b, "\\%c", ch);
		else if (ch == '\n')
			sb_printf(b, "\\n");
		else if (ch < 0x20 || ch == 0x7f)
			sb_printf(b, "\\x%02x", ch);
		else if (ch == 0xc2 && i + 1 < n && (unsigned char)s.ptr[i + 1] >= 0x80 &&
			 (unsigned char)s.ptr[i + 1] <= 0x9f)
			sb_printf(b, "\\u%04x", (unsigned char)s.ptr[++i]); /* a C1 control */
		else
			sb_printf(b, "%c", ch);
	}
	sb_printf(b, s.len > max ? "\"..." : "\"");
}

static void sb_scalar(struct sbuf *b, uint32_t t, const uint8_t *p)
{
	uint64_t u;
	bool neg;
	if (int_value(t, p, &u, &neg)) {
		if (neg)
			sb_printf(b, "%" PRId64, (int64_t)u);
		else
			sb_printf(b, "%" PRIu64, u);
	} else if (t == GGUF_VT_FLOAT32) {
		float v;
		memcpy(&v, p, 4);
		sb_printf(b, "%g", (double)v);
	} else if (t == GGUF_VT_FLOAT64) {
		double v;
		memcpy(&v, p, 8);
		sb_printf(b, "%g", v);
	} else if (t == GGUF_VT_BOOL) {
		sb_printf(b, "%s", p[0] ? "true" : "false");
	}
}

void gguf_kv_to_string(const gguf_file *f, uint64_t i, char *buf, size_t buflen)
{
	if (!buf || buflen == 0)
		return;
	buf[0] = '\0';
	if (i >= f->n_kv)
		return;
	struct sbuf b = {buf, 0, buflen};
	const struct gguf_kv *kv = &f->kv[i];
	if (kv->type == GGUF_VT_STRING) {
		struct gguf_str s;
		memcpy(&s.len, kv->val, 8);
		s.ptr = (const char *)kv->val + 8;
		sb_quoted(&b, s, 60);
	} else if (kv->type != GGUF_VT_ARRAY) {
		sb_scalar(&b, kv->type, kv->val);
	} else if (kv->arr_n > 8 || kv->arr_type == GGUF_VT_ARRAY) {
		sb_printf(&b, "[%" PRIu64 " %s]", kv->arr_n,
			  kv->arr_type == GGUF_VT_STRING ? "strings"
			  : kv->arr_type == GGUF_VT_ARRAY ? "arrays"
							  : vtype_name(kv->arr_type));
	} else {
		sb_printf(&b, "[");
		for (uint64_t j = 0; j < kv->arr_n; j++) {
			if (j)
				sb_printf(&b, ", ");
			if (kv->arr_type == GGUF_VT_STRING)
				sb_quoted(&b, gguf_arr_str_at(f, (int64_t)i, j), 24);
			else
				sb_scalar(&b, kv->arr_type, kv->val + j * vtype_size(kv->arr_type));
		}
		sb_printf(&b, "]");
	}
}

/* ---- tensors ----------------------------------------------------------- */

uint64_t gguf_n_tensors(const gguf_file *f)
{
	return f->n_tensors;
}

const struct gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i)
{
	return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
	int64_t i = find_sorted(f, f->t_sorted, f->n_tensors, tensor_name, name);
	return i < 0 ? NULL : &f->tensors[i];
}

bool gguf_str_eq(struct gguf_str s, const char *c)
{
	if (!c)
		return s.ptr == NULL;
	size_t n = strlen(c);
	return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* ---- split models (llama.cpp's gguf-split) ------------------------------ */
/*
 * A model split by llama-gguf-split is PREFIX-00001-of-0000N.gguf ...
 * PREFIX-0000N-of-0000N.gguf: every part is a whole GGUF file carrying
 * split.no (0-based), split.count and, in the first, split.tensors.count
 * and the model's metadata; each part's tensor data is its own.
 */

static bool split_keys(const gguf_file *f, uint32_t *no, uint32_t *count)
{
	uint64_t v;
	*no = 0;
	*count = 1;
	if (!gguf_get_uint(f, "split.count", &v))
		return false;
	*count = (uint32_t)(v > 0xffff ? 0xffff : v);
	if (gguf_get_uint(f, "split.no", &v))
		*no = (uint32_t)(v > 0xffff ? 0xffff : v);
	return true;
}

/* PATH's prefix when it ends in "-NNNNN-of-MMMMM.gguf" for part NO of COUNT. */
static bool split_prefix(const char *path, uint32_t no, uint32_t count, char *prefix, size_t len)
{
	char tail[64];
	snprintf(tail, sizeof tail, "-%05u-of-%05u.gguf", no + 1, count);
	size_t n = strlen(path), t = strlen(tail);
	if (n <= t || strcmp(path + n - t, tail) != 0 || n - t >= len)
		return false;
	memcpy(prefix, path, n - t);
	prefix[n - t] = '\0';
	return true;
}

/* Appends the tensors of the parts to F's tables and re-sorts them. */
static bool merge_parts(gguf_file *f, char *err, size_t errlen)
{
	uint64_t total = f->n_tensors;
	for (uint32_t i = 0; i < f->n_parts; i++)
		total += f->parts[i]->n_tensors;
	struct gguf_tensor *t = eng_realloc(f->tensors, total * sizeof *t);
	if (t)
		f->tensors = t;
	uint32_t *srt = t ? eng_realloc(f->t_sorted, total * sizeof *srt) : NULL;
	if (srt)
		f->t_sorted = srt;
	if (!t || !srt) {
		set_err(err, errlen, "%s: out of memory", f->path);
		errno = ENOMEM;
		return false;
	}
	uint64_t n = f->n_tensors;
	for (uint32_t i = 0; i < f->n_parts; i++)
		for (uint64_t j = 0; j < f->parts[i]->n_tensors; j++)
			f->tensors[n++] = f->parts[i]->tensors[j];
	f->n_tensors = total;
	if (!sort_names(f, f->t_sorted, total, tensor_name)) {
		set_err(err, errlen, "%s: out of memory", f->path);
		errno = ENOMEM;
		return false;
	}
	for (uint64_t i = 1; i < total; i++) {
		struct gguf_str a = f->tensors[f->t_sorted[i - 1]].name, b = f->tensors[f->t_sorted[i]].name;
		if (cmp_str(a, b) == 0) {
			char name[80];
			sanitize(b, name, sizeof name);
			set_err(err, errlen, "%s: tensor '%s' is in two parts of the split model", f->path, name);
			errno = EINVAL;
			return false;
		}
	}
	return true;
}

/* Opens parts 2..COUNT beside the first part F. */
static bool open_parts(gguf_file *f, const char *prefix, uint32_t count, char *err, size_t errlen)
{
	f->parts = eng_calloc(count, sizeof *f->parts);
	if (!f->parts) {
		set_err(err, errlen, "%s: out of memory", f->path);
		errno = ENOMEM;
		return false;
	}
	f->total_size = f->size;
	for (uint32_t i = 1; i < count; i++) {
		char path[4160], perr[512];
		uint32_t no, cnt;
		snprintf(path, sizeof path, "%s-%05u-of-%05u.gguf", prefix, i + 1, count);
		gguf_file *p = gguf_open(path, perr, sizeof perr);
		if (!p) {
			set_err(err, errlen, "%s: part %u of %u of this split model: %s", f->path, i + 1, count,
				perr);
			return false;
		}
		f->parts[f->n_parts++] = p;
		f->total_size += p->size;
		if (!split_keys(p, &no, &cnt) || no != i || cnt != count) {
			set_err(err, errlen, "%s: %s is not part %u of %u of this model (its split keys say %u of %u)",
				f->path, path, i + 1, count, no + 1, cnt);
			errno = EINVAL;
			return false;
		}
	}
	return true;
}

gguf_file *gguf_open_model(const char *path, char *err, size_t errlen)
{
	gguf_file *f = gguf_open(path, err, errlen);
	uint32_t no, count;
	if (!f || !split_keys(f, &no, &count) || count <= 1)
		return f;
	char prefix[4096];
	uint64_t want;
	if (no != 0) {
		set_err(err, errlen, "%s: part %u of %u of a split model: open the first part instead", path,
			no + 1, count);
		errno = EINVAL;
	} else if (!split_prefix(path, no, count, prefix, sizeof prefix)) {
		set_err(err, errlen, "%s: first of %u parts, but not named PREFIX-00001-of-%05u.gguf, so the other parts cannot be found",
			path, count, count);
		errno = EINVAL;
	} else if (open_parts(f, prefix, count, err, errlen) && merge_parts(f, err, errlen)) {
		if (!gguf_get_uint(f, "split.tensors.count", &want) || want == f->n_tensors)
			return f;
		set_err(err, errlen, "%s: the parts hold %llu tensors, split.tensors.count says %llu", path,
			(unsigned long long)f->n_tensors, (unsigned long long)want);
		errno = EINVAL;
	}
	gguf_close(f);
	return NULL;
}
