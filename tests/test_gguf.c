/*
 * test_gguf.c - unit tests for the GGUF reader (engine/gguf.c).
 *
 * Part one builds a small but complete GGUF file in memory (every scalar
 * type, string and numeric arrays, a nested array, two tensors of
 * different types), checks every accessor on it, and records where each
 * interesting field lies.  Part two derives malformed files from it by
 * patching those fields (or by building variants) and requires each to be
 * rejected with a one-line message naming the file; the image is also cut
 * at every byte.  Each candidate is opened from an exact-size heap copy so
 * that ASan catches any read past the end.  Part three opens the two real
 * models, when present, and checks facts known from the gguf Python
 * package.
 */
#include "config.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"

static int n_checks, n_failed, n_rejected;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		n_checks++;                                                           \
		if (!(cond)) {                                                        \
			n_failed++;                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                     \
	} while (0)

/* ---- an in-memory GGUF writer ---- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct wbuf *w, const void *d, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 1024;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *p = realloc(w->p, cap);
		if (!p) {
			fprintf(stderr, "out of memory\n");
			exit(99);
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, d, n);
	w->len += n;
}

static void put_u8(struct wbuf *w, uint8_t v) { put(w, &v, 1); }
static void put_u32(struct wbuf *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(struct wbuf *w, uint64_t v) { put(w, &v, 8); }
static void put_f32(struct wbuf *w, float v) { put(w, &v, 4); }

static void put_str(struct wbuf *w, const char *s)
{
	put_u64(w, strlen(s));
	put(w, s, strlen(s));
}

static void pad_to(struct wbuf *w, size_t align)
{
	while (w->len % align)
		put_u8(w, 0);
}

/* Where the fields of the reference file lie (byte offsets). */
struct marks {
	size_t version, n_tensors, n_kv;
	size_t k_arch_len;        /* length prefix of key "general.architecture" */
	size_t v_arch_len;        /* length prefix of its value */
	size_t k_align_type, v_align;
	size_t k_u8_type;         /* type field of the u8 key */
	size_t v_bool;
	size_t k_dup_a, k_dup_b;  /* name bytes of "test.dup_a" / "test.dup_b" */
	size_t a_tok_type, a_tok_n; /* string array element type and count */
	size_t a_tok_str0_len;
	size_t a_i32_n;
	size_t a_nest_type;       /* element type of the nested array */
	size_t a_nest_inner_n;    /* count of its first inner array */
	size_t t0_name, t1_name;  /* name bytes of tensors "t0", "t1" */
	size_t t0_ndims, t0_ne0, t0_ne1, t0_type, t0_off;
	size_t t1_ndims, t1_ne0, t1_type, t1_off;
	size_t data;
};

/* Builds the reference file: version 3, alignment 64 (explicit), nested
 * arrays DEPTH levels deep (2 in the reference). */
static void build(struct wbuf *w, struct marks *m, int depth)
{
	memset(m, 0, sizeof *m);
	put(w, "GGUF", 4);
	m->version = w->len;
	put_u32(w, 3);
	m->n_tensors = w->len;
	put_u64(w, 2);
	m->n_kv = w->len;
	put_u64(w, 17);

	m->k_arch_len = w->len;
	put_str(w, "general.architecture");
	put_u32(w, GGUF_VT_STRING);
	m->v_arch_len = w->len;
	put_str(w, "testarch");

	put_str(w, "general.alignment");
	m->k_align_type = w->len;
	put_u32(w, GGUF_VT_UINT32);
	m->v_align = w->len;
	put_u32(w, 64);

	put_str(w, "test.u8");
	m->k_u8_type = w->len;
	put_u32(w, GGUF_VT_UINT8);
	put_u8(w, 200);

	put_str(w, "test.i8");
	put_u32(w, GGUF_VT_INT8);
	put_u8(w, 0xfe); /* -2 */

	put_str(w, "test.u16");
	put_u32(w, GGUF_VT_UINT16);
	uint16_t u16 = 60000;
	put(w, &u16, 2);

	put_str(w, "test.i32");
	put_u32(w, GGUF_VT_INT32);
	int32_t i32 = -7;
	put(w, &i32, 4);

	put_str(w, "test.u64");
	put_u32(w, GGUF_VT_UINT64);
	put_u64(w, 1ull << 40);

	put_str(w, "test.f32");
	put_u32(w, GGUF_VT_FLOAT32);
	put_f32(w, 1.5f);

	put_str(w, "test.f64");
	put_u32(w, GGUF_VT_FLOAT64);
	double d = 0.25;
	put(w, &d, 8);

	put_str(w, "test.bool");
	put_u32(w, GGUF_VT_BOOL);
	m->v_bool = w->len;
	put_u8(w, 1);

	put_str(w, "test.i64");
	put_u32(w, GGUF_VT_INT64);
	put_u64(w, 42);

	m->k_dup_a = w->len + 8;
	put_str(w, "test.dup_a");
	put_u32(w, GGUF_VT_UINT32);
	put_u32(w, 1);
	m->k_dup_b = w->len + 8;
	put_str(w, "test.dup_b");
	put_u32(w, GGUF_VT_UINT32);
	put_u32(w, 2);

	put_str(w, "tokenizer.ggml.tokens");
	put_u32(w, GGUF_VT_ARRAY);
	m->a_tok_type = w->len;
	put_u32(w, GGUF_VT_STRING);
	m->a_tok_n = w->len;
	put_u64(w, 4);
	m->a_tok_str0_len = w->len;
	put_str(w, "<s>");
	put_str(w, "");
	put_str(w, "hello");
	put_str(w, "\xe2\x96\x81world");

	put_str(w, "test.arr_i32");
	put_u32(w, GGUF_VT_ARRAY);
	put_u32(w, GGUF_VT_INT32);
	m->a_i32_n = w->len;
	put_u64(w, 3);
	for (int32_t v = -1; v <= 1; v++)
		put(w, &v, 4);

	/* Nested: an array (depth 1) of 2 arrays of ... of u8. */
	put_str(w, "test.nested");
	put_u32(w, GGUF_VT_ARRAY);
	m->a_nest_type = w->len;
	put_u32(w, depth > 1 ? GGUF_VT_ARRAY : GGUF_VT_UINT8);
	put_u64(w, 2);
	for (int e = 0; e < 2; e++) {
		for (int l = 2; l <= depth; l++) {
			put_u32(w, l < depth ? GGUF_VT_ARRAY : GGUF_VT_UINT8);
			if (e == 0 && l == 2)
				m->a_nest_inner_n = w->len;
			put_u64(w, l < depth ? 1 : 3);
		}
		put_u8(w, 1);
		put_u8(w, 2);
		put_u8(w, 3);
		if (depth == 1)
			break;
	}
	if (depth == 1) { /* two scalar elements were declared: add 1 byte */
		memcpy(w->p + m->a_nest_type + 4, &(uint64_t){3}, 8);
	}

	put_str(w, "test.str");
	put_u32(w, GGUF_VT_STRING);
	put_str(w, "line\nbreak \"quoted\"");

	/* Tensor infos. t0: F32 [4 x 2] = 32 bytes at 0; t1: Q4_0 [64] =
	 * 36 bytes at 64 (alignment 64), ending the file. */
	m->t0_name = w->len + 8;
	put_str(w, "t0");
	m->t0_ndims = w->len;
	put_u32(w, 2);
	m->t0_ne0 = w->len;
	put_u64(w, 4);
	m->t0_ne1 = w->len;
	put_u64(w, 2);
	m->t0_type = w->len;
	put_u32(w, GGML_TYPE_F32);
	m->t0_off = w->len;
	put_u64(w, 0);

	m->t1_name = w->len + 8;
	put_str(w, "t1");
	m->t1_ndims = w->len;
	put_u32(w, 1);
	m->t1_ne0 = w->len;
	put_u64(w, 64);
	m->t1_type = w->len;
	put_u32(w, GGML_TYPE_Q4_0);
	m->t1_off = w->len;
	put_u64(w, 64);

	pad_to(w, 64);
	m->data = w->len;
	for (int i = 0; i < 8; i++)
		put_f32(w, (float)i);
	pad_to(w, 64);
	for (int i = 0; i < 36; i++)
		put_u8(w, (uint8_t)i);
}

/* Opens a heap copy of exactly LEN bytes; ASan sees any overread. */
static gguf_file *open_copy(const uint8_t *p, size_t len, char *err, size_t errlen,
			    uint8_t **copy)
{
	*copy = malloc(len ? len : 1);
	if (!*copy)
		exit(99);
	if (len)
		memcpy(*copy, p, len);
	return gguf_open_memory(*copy, len, "case.gguf", err, errlen);
}

/* Expects rejection with a one-line message naming the file (and, when
 * WANT is not NULL, containing WANT). */
static void expect_reject(const char *what, const uint8_t *p, size_t len, const char *want)
{
	char err[512];
	uint8_t *copy;
	memset(err, 'x', sizeof err);
	gguf_file *f = open_copy(p, len, err, sizeof err, &copy);
	n_checks++;
	bool ok = !f && strncmp(err, "case.gguf: ", 11) == 0 && strchr(err, '\n') == NULL &&
		  strlen(err) > 12 && (!want || strstr(err, want));
	if (!ok) {
		n_failed++;
		fprintf(stderr, "FAIL %s: %s (err: %.200s)\n", what,
			f ? "accepted" : "bad message", f ? "" : err);
	} else {
		n_rejected++;
		if (getenv("TEST_GGUF_VERBOSE"))
			printf("  rejected %-28s %s\n", what, err);
	}
	gguf_close(f);
	free(copy);
}

/* Copy of the reference with a little-endian value patched at OFF. */
static uint8_t *patched(const struct wbuf *ref, size_t off, const void *v, size_t n)
{
	uint8_t *p = malloc(ref->len);
	if (!p)
		exit(99);
	memcpy(p, ref->p, ref->len);
	memcpy(p + off, v, n);
	return p;
}

static void reject_u32(const struct wbuf *ref, const char *what, size_t off, uint32_t v,
		       const char *want)
{
	uint8_t *p = patched(ref, off, &v, 4);
	expect_reject(what, p, ref->len, want);
	free(p);
}

static void reject_u64(const struct wbuf *ref, const char *what, size_t off, uint64_t v,
		       const char *want)
{
	uint8_t *p = patched(ref, off, &v, 8);
	expect_reject(what, p, ref->len, want);
	free(p);
}

static void reject_bytes(const struct wbuf *ref, const char *what, size_t off, const char *v,
			 const char *want)
{
	uint8_t *p = patched(ref, off, v, strlen(v));
	expect_reject(what, p, ref->len, want);
	free(p);
}

/* ---- part one: the reference file ---- */

static void test_reference(const struct wbuf *ref, const struct marks *m)
{
	char err[256];
	uint8_t *copy;
	gguf_file *f = open_copy(ref->p, ref->len, err, sizeof err, &copy);
	CHECK(f != NULL);
	if (!f) {
		fprintf(stderr, "reference rejected: %s\n", err);
		free(copy);
		return;
	}
	CHECK(err[0] == '\0');
	CHECK(gguf_version(f) == 3);
	CHECK(gguf_alignment(f) == 64);
	CHECK(gguf_n_kv(f) == 17);
	CHECK(gguf_n_tensors(f) == 2);
	CHECK(gguf_file_size(f) == ref->len);
	CHECK(gguf_data_offset(f) == m->data);
	CHECK(gguf_base(f) == copy);
	CHECK(strcmp(gguf_path(f), "case.gguf") == 0);

	struct gguf_str s = {NULL, 0};
	CHECK(gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, "testarch"));
	CHECK(!gguf_get_str(f, "general.alignment", &s));
	CHECK(!gguf_get_str(f, "no.such.key", &s));
	CHECK(gguf_find_key(f, "no.such.key") == -1);
	CHECK(gguf_find_key(f, "general") == -1);
	CHECK(gguf_find_key(f, "general.architecture") == 0);
	CHECK(gguf_find_key(f, "test.str") == 16);
	CHECK(gguf_str_eq(gguf_key_name(f, 2), "test.u8"));
	CHECK(gguf_key_name(f, 17).ptr == NULL);

	uint32_t u32 = 0;
	CHECK(gguf_get_u32(f, "general.alignment", &u32) && u32 == 64);
	CHECK(!gguf_get_u32(f, "test.i32", &u32) && u32 == 64);
	int32_t i32 = 0;
	CHECK(gguf_get_i32(f, "test.i32", &i32) && i32 == -7);
	uint64_t u = 0;
	CHECK(gguf_get_uint(f, "test.u8", &u) && u == 200);
	CHECK(gguf_get_uint(f, "test.u16", &u) && u == 60000);
	CHECK(gguf_get_uint(f, "test.u64", &u) && u == (1ull << 40));
	CHECK(gguf_get_uint(f, "test.i64", &u) && u == 42);
	u = 5;
	CHECK(!gguf_get_uint(f, "test.i32", &u) && u == 5);  /* negative */
	CHECK(!gguf_get_uint(f, "test.i8", &u) && u == 5);
	CHECK(!gguf_get_uint(f, "test.f32", &u));
	CHECK(!gguf_get_uint(f, "general.architecture", &u));
	float fl = 0;
	CHECK(gguf_get_f32(f, "test.f32", &fl) && fl == 1.5f);
	CHECK(!gguf_get_f32(f, "test.f64", &fl));
	bool b = false;
	CHECK(gguf_get_bool(f, "test.bool", &b) && b);
	CHECK(!gguf_get_bool(f, "test.u8", &b));
	CHECK(gguf_kv_type(f, 0) == GGUF_VT_STRING);
	CHECK(gguf_kv_type(f, 13) == GGUF_VT_ARRAY);
	CHECK(gguf_arr_type(f, 13) == GGUF_VT_STRING && gguf_arr_len(f, 13) == 4);
	CHECK(gguf_arr_type(f, 0) == 0 && gguf_arr_len(f, 0) == 0);
	CHECK(gguf_arr_type(f, 15) == GGUF_VT_ARRAY && gguf_arr_len(f, 15) == 2);

	/* string arrays */
	uint64_t n = 0;
	CHECK(gguf_get_arr_str_n(f, "tokenizer.ggml.tokens", &n) && n == 4);
	CHECK(!gguf_get_arr_str_n(f, "test.arr_i32", &n));
	CHECK(gguf_str_eq(gguf_arr_str(f, "tokenizer.ggml.tokens", 0), "<s>"));
	s = gguf_arr_str(f, "tokenizer.ggml.tokens", 1);
	CHECK(s.ptr != NULL && s.len == 0);
	CHECK(gguf_str_eq(gguf_arr_str(f, "tokenizer.ggml.tokens", 2), "hello"));
	CHECK(gguf_str_eq(gguf_arr_str(f, "tokenizer.ggml.tokens", 3), "\xe2\x96\x81world"));
	CHECK(gguf_arr_str(f, "tokenizer.ggml.tokens", 4).ptr == NULL);
	CHECK(gguf_arr_str(f, "test.arr_i32", 0).ptr == NULL);
	CHECK(gguf_arr_str(f, "missing", 0).ptr == NULL);
	CHECK(gguf_str_eq(gguf_arr_str_at(f, 13, 2), "hello"));
	CHECK(gguf_arr_str_at(f, -1, 0).ptr == NULL);
	CHECK(gguf_arr_str_at(f, 99, 0).ptr == NULL);

	/* numeric arrays */
	const void *data = NULL;
	CHECK(gguf_get_arr(f, "test.arr_i32", GGUF_VT_INT32, &n, &data) && n == 3);
	if (data) {
		int32_t v[3];
		memcpy(v, data, sizeof v);
		CHECK(v[0] == -1 && v[1] == 0 && v[2] == 1);
	}
	CHECK(!gguf_get_arr(f, "test.arr_i32", GGUF_VT_UINT32, &n, &data));
	CHECK(!gguf_get_arr(f, "test.u8", GGUF_VT_UINT8, &n, &data));

	/* display */
	char buf[128];
	gguf_kv_to_string(f, 0, buf, sizeof buf);
	CHECK(strcmp(buf, "\"testarch\"") == 0);
	gguf_kv_to_string(f, 3, buf, sizeof buf);
	CHECK(strcmp(buf, "-2") == 0);
	gguf_kv_to_string(f, 7, buf, sizeof buf);
	CHECK(strcmp(buf, "1.5") == 0);
	gguf_kv_to_string(f, 8, buf, sizeof buf);
	CHECK(strcmp(buf, "0.25") == 0);
	gguf_kv_to_string(f, 9, buf, sizeof buf);
	CHECK(strcmp(buf, "true") == 0);
	gguf_kv_to_string(f, 6, buf, sizeof buf);
	CHECK(strcmp(buf, "1099511627776") == 0);
	gguf_kv_to_string(f, 14, buf, sizeof buf);
	CHECK(strcmp(buf, "[-1, 0, 1]") == 0);
	gguf_kv_to_string(f, 13, buf, sizeof buf);
	CHECK(strcmp(buf, "[\"<s>\", \"\", \"hello\", \"\xe2\x96\x81world\"]") == 0);
	gguf_kv_to_string(f, 15, buf, sizeof buf);
	CHECK(strcmp(buf, "[2 arrays]") == 0);
	gguf_kv_to_string(f, 16, buf, sizeof buf);
	CHECK(strcmp(buf, "\"line\\nbreak \\\"quoted\\\"\"") == 0);
	gguf_kv_to_string(f, 16, buf, 6); /* truncation stays terminated */
	CHECK(strlen(buf) <= 5);

	/* tensors */
	const struct gguf_tensor *t0 = gguf_find_tensor(f, "t0");
	const struct gguf_tensor *t1 = gguf_find_tensor(f, "t1");
	CHECK(t0 == gguf_tensor_at(f, 0) && t1 == gguf_tensor_at(f, 1));
	CHECK(gguf_tensor_at(f, 2) == NULL);
	CHECK(gguf_find_tensor(f, "t") == NULL && gguf_find_tensor(f, "t00") == NULL);
	if (t0 && t1) {
		CHECK(gguf_str_eq(t0->name, "t0"));
		CHECK(t0->type == GGML_TYPE_F32 && t0->n_dims == 2);
		CHECK(t0->ne[0] == 4 && t0->ne[1] == 2 && t0->ne[2] == 1 && t0->ne[3] == 1);
		CHECK(t0->n_elements == 8 && t0->size == 32 && t0->offset == 0);
		CHECK(t0->data == copy + m->data);
		float v[8];
		memcpy(v, t0->data, sizeof v);
		CHECK(v[0] == 0.0f && v[7] == 7.0f);
		CHECK(t1->type == GGML_TYPE_Q4_0 && t1->n_dims == 1 && t1->ne[0] == 64);
		CHECK(t1->size == 36 && t1->offset == 64);
		CHECK((const uint8_t *)t1->data + t1->size == copy + ref->len);
	}
	gguf_close(f);
	free(copy);
}

static void test_types(void)
{
	static const struct {
		uint32_t t, bs, bb;
		const char *name;
	} known[] = {
		{GGML_TYPE_F32, 1, 4, "F32"},         {GGML_TYPE_F16, 1, 2, "F16"},
		{GGML_TYPE_BF16, 1, 2, "BF16"},       {GGML_TYPE_Q4_0, 32, 18, "Q4_0"},
		{GGML_TYPE_Q4_1, 32, 20, "Q4_1"},     {GGML_TYPE_Q5_0, 32, 22, "Q5_0"},
		{GGML_TYPE_Q5_1, 32, 24, "Q5_1"},     {GGML_TYPE_Q8_0, 32, 34, "Q8_0"},
		{GGML_TYPE_Q2_K, 256, 84, "Q2_K"},    {GGML_TYPE_Q3_K, 256, 110, "Q3_K"},
		{GGML_TYPE_Q4_K, 256, 144, "Q4_K"},   {GGML_TYPE_Q5_K, 256, 176, "Q5_K"},
		{GGML_TYPE_Q6_K, 256, 210, "Q6_K"},   {GGML_TYPE_Q8_K, 256, 292, "Q8_K"},
		{GGML_TYPE_IQ2_XXS, 256, 66, "IQ2_XXS"}, {GGML_TYPE_IQ2_XS, 256, 74, "IQ2_XS"},
		{GGML_TYPE_IQ3_XXS, 256, 98, "IQ3_XXS"}, {GGML_TYPE_IQ1_S, 256, 50, "IQ1_S"},
		{GGML_TYPE_IQ4_NL, 32, 18, "IQ4_NL"}, {GGML_TYPE_IQ3_S, 256, 110, "IQ3_S"},
		{GGML_TYPE_IQ2_S, 256, 82, "IQ2_S"},  {GGML_TYPE_IQ4_XS, 256, 136, "IQ4_XS"},
		{GGML_TYPE_IQ1_M, 256, 56, "IQ1_M"},  {GGML_TYPE_I8, 1, 1, "I8"},
		{GGML_TYPE_I64, 1, 8, "I64"},         {GGML_TYPE_F64, 1, 8, "F64"},
		{GGML_TYPE_TQ1_0, 256, 54, "TQ1_0"},  {GGML_TYPE_TQ2_0, 256, 66, "TQ2_0"},
		{GGML_TYPE_MXFP4, 32, 17, "MXFP4"},   {GGML_TYPE_NVFP4, 64, 36, "NVFP4"},
		{GGML_TYPE_Q1_0, 128, 18, "Q1_0"},    {GGML_TYPE_Q2_0, 64, 18, "Q2_0"},
	};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		CHECK(ggml_type_block_size(known[i].t) == known[i].bs);
		CHECK(ggml_type_block_bytes(known[i].t) == known[i].bb);
		CHECK(strcmp(ggml_type_name(known[i].t), known[i].name) == 0);
	}
	static const uint32_t unknown[] = {4, 5, 31, 32, 33, 36, 37, 38, 43, 1000, UINT32_MAX};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		CHECK(ggml_type_block_size(unknown[i]) == 0);
		CHECK(ggml_type_block_bytes(unknown[i]) == 0);
		CHECK(strcmp(ggml_type_name(unknown[i]), "?") == 0);
		CHECK(ggml_row_bytes(unknown[i], 256) == 0);
	}
	CHECK(ggml_row_bytes(GGML_TYPE_Q4_K, 4096) == 16 * 144);
	CHECK(ggml_row_bytes(GGML_TYPE_Q4_K, 4095) == 0);
	CHECK(ggml_row_bytes(GGML_TYPE_F16, 3) == 6);
	CHECK(ggml_row_bytes(GGML_TYPE_F64, UINT64_MAX / 4) == 0); /* overflow */
}

/* ---- part two: malformed files ---- */

static void test_malformed(const struct wbuf *ref, const struct marks *m)
{
	/* every truncation */
	for (size_t len = 0; len < ref->len; len++) {
		char what[64];
		snprintf(what, sizeof what, "truncated at %zu", len);
		expect_reject(what, ref->p, len, NULL);
	}

	reject_bytes(ref, "bad magic", 0, "GGUG", "magic");
	reject_bytes(ref, "lowercase magic", 0, "gguf", "magic");
	reject_u32(ref, "version 0", m->version, 0, "version");
	reject_u32(ref, "version 1", m->version, 1, "version 1");
	reject_u32(ref, "version 4", m->version, 4, "version");
	reject_u32(ref, "version big-endian", m->version, 0x03000000, "big-endian");
	reject_u32(ref, "version huge", m->version, UINT32_MAX, "version");

	reject_u64(ref, "tensor count 2^63", m->n_tensors, 1ull << 63, "tensor count");
	reject_u64(ref, "tensor count cap+1", m->n_tensors, GGUF_MAX_TENSORS + 1ull, "limit");
	reject_u64(ref, "tensor count 1000", m->n_tensors, 1000, "tensor count");
	reject_u64(ref, "tensor count +1", m->n_tensors, 3, NULL);
	reject_u64(ref, "key count 2^64-1", m->n_kv, UINT64_MAX, "key count");
	reject_u64(ref, "key count cap+1", m->n_kv, GGUF_MAX_KEYS + 1ull, "limit");
	reject_u64(ref, "key count 60000", m->n_kv, 60000, "key count");
	reject_u64(ref, "key count +1", m->n_kv, 18, NULL);

	reject_u64(ref, "key length 2^64-1", m->k_arch_len, UINT64_MAX, "length");
	reject_u64(ref, "key length 0", m->k_arch_len, 0, NULL);
	reject_u64(ref, "key length past end", m->k_arch_len, 60000, "truncated");
	reject_u64(ref, "string length 2^63", m->v_arch_len, 1ull << 63, "limit");
	reject_u64(ref, "string length cap+1", m->v_arch_len, GGUF_MAX_STRING + 1ull, "limit");
	reject_u64(ref, "string length past end", m->v_arch_len, 100000, "truncated");
	reject_u64(ref, "array string length huge", m->a_tok_str0_len, 1ull << 62, "limit");

	reject_u64(ref, "string array count 2^62", m->a_tok_n, 1ull << 62, "limit");
	reject_u64(ref, "string array count cap+1", m->a_tok_n, GGUF_MAX_ARRAY + 1ull, "limit");
	reject_u64(ref, "string array count 2^25", m->a_tok_n, 1ull << 25, "cannot fit");
	reject_u64(ref, "i32 array count 2^63", m->a_i32_n, 1ull << 63, "limit");
	reject_u64(ref, "i32 array count 2^20", m->a_i32_n, 1ull << 20, "truncated");
	reject_u64(ref, "nested inner count huge", m->a_nest_inner_n, UINT64_MAX, "limit");
	reject_u64(ref, "nested inner count +1", m->a_nest_inner_n, 2, NULL);

	reject_u32(ref, "value type 13", m->k_u8_type, GGUF_VT_COUNT, "invalid value type");
	reject_u32(ref, "value type 2^32-1", m->k_u8_type, UINT32_MAX, "invalid value type");
	reject_u32(ref, "array elem type 13", m->a_tok_type, GGUF_VT_COUNT, "element type");
	reject_u32(ref, "nested elem type 99", m->a_nest_type + 12, 99, "element type");
	reject_u32(ref, "string array as u8", m->a_tok_type, GGUF_VT_UINT64, NULL);
	reject_bytes(ref, "bool value 2", m->v_bool, "\x02", "bool");

	reject_bytes(ref, "duplicate key", m->k_dup_b, "test.dup_a", "duplicate key");
	reject_bytes(ref, "duplicate tensor name", m->t1_name, "t0", "duplicate tensor");

	reject_u32(ref, "alignment 0", m->v_align, 0, "power of two");
	reject_u32(ref, "alignment 3", m->v_align, 3, "power of two");
	reject_u32(ref, "alignment 48", m->v_align, 48, "power of two");
	reject_u32(ref, "alignment as i32", m->k_align_type, GGUF_VT_INT32, "u32");
	/* 4096-aligned data section starts past the end of this small file */
	reject_u32(ref, "alignment 4096", m->v_align, 4096, NULL);

	reject_u32(ref, "n_dims 0", m->t0_ndims, 0, "n_dims");
	reject_u32(ref, "n_dims 5", m->t0_ndims, 5, "n_dims");
	reject_u32(ref, "n_dims 2^32-1", m->t1_ndims, UINT32_MAX, "n_dims");
	reject_u64(ref, "negative dimension", m->t0_ne0, 1ull << 63, "negative");
	{
		uint8_t *p = patched(ref, m->t0_ne0, &(uint64_t){1ull << 32}, 8);
		memcpy(p + m->t0_ne1, &(uint64_t){1ull << 32}, 8);
		expect_reject("shape product 2^64", p, ref->len, "overflow");
		memcpy(p + m->t0_ne0, &(uint64_t){(1ull << 62) + 4}, 8);
		memcpy(p + m->t0_ne1, &(uint64_t){2}, 8);
		expect_reject("shape product 2^63+8", p, ref->len, "overflow");
		memcpy(p + m->t0_ne0, &(uint64_t){1ull << 61}, 8);
		memcpy(p + m->t0_ne1, &(uint64_t){1}, 8);
		memcpy(p + m->t0_type, &(uint32_t){GGML_TYPE_F64}, 4);
		expect_reject("byte size 2^64", p, ref->len, "overflow");
		free(p);
	}
	reject_u64(ref, "tensor past end", m->t0_ne1, 1000, "past the end");
	reject_u64(ref, "last tensor one block more", m->t1_ne0, 96, "past the end");

	reject_u32(ref, "tensor type 4", m->t0_type, 4, "unknown tensor type");
	reject_u32(ref, "tensor type 31", m->t0_type, 31, "unknown tensor type");
	reject_u32(ref, "tensor type 43", m->t1_type, GGML_TYPE_COUNT, "unknown tensor type");
	reject_u32(ref, "tensor type 2^32-1", m->t1_type, UINT32_MAX, "unknown tensor type");
	reject_u64(ref, "row not multiple of block", m->t1_ne0, 48, "multiple");
	reject_u32(ref, "Q4_K row of 64", m->t1_type, GGML_TYPE_Q4_K, "multiple");

	reject_u64(ref, "offset 2^63", m->t1_off, 1ull << 63, "past the end");
	reject_u64(ref, "offset 2^64-64", m->t1_off, UINT64_MAX - 63, "past the end");
	reject_u64(ref, "offset one block past", m->t1_off, 128, "past the end");
	reject_u64(ref, "offset unaligned", m->t1_off, 65, "aligned");
	reject_u64(ref, "offset unaligned 32", m->t1_off, 32, "aligned");
	reject_u64(ref, "overlapping tensors", m->t1_off, 0, "overlaps");
	{
		/* t0 grown to 72 bytes still fits the file but runs into t1 */
		uint8_t *p = patched(ref, m->t0_ne1, &(uint64_t){1}, 8);
		memcpy(p + m->t0_ne0, &(uint64_t){18}, 8);
		expect_reject("overlap by 8 bytes", p, ref->len, "overlaps");
		free(p);
	}

	/* variants built from scratch */
	struct wbuf w = {0};
	struct marks mk;
	build(&w, &mk, GGUF_MAX_NESTING + 1);
	expect_reject("arrays nested too deep", w.p, w.len, "nested");
	free(w.p);
	for (int depth = 1; depth <= GGUF_MAX_NESTING; depth++) {
		struct wbuf v = {0};
		char err[256];
		uint8_t *copy;
		build(&v, &mk, depth);
		gguf_file *f = open_copy(v.p, v.len, err, sizeof err, &copy);
		CHECK(f != NULL);
		if (!f)
			fprintf(stderr, "nesting depth %d rejected: %s\n", depth, err);
		gguf_close(f);
		free(copy);
		free(v.p);
	}
}

/* Patches that keep the file valid must be accepted. */
static void test_accepted_variants(const struct wbuf *ref, const struct marks *m)
{
	static const struct {
		const char *what;
		size_t off;
		uint64_t v;
		int n;
	} ok[] = {
		{"version 2", 0, 2, 4},
		{"alignment 32", 1, 32, 4},
		{"alignment 16", 1, 16, 4},
		{"bool 0", 2, 0, 1},
		{"empty tensor", 3, 0, 8},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		size_t off = ok[i].off == 0 ? m->version
			     : ok[i].off == 1 ? m->v_align
			     : ok[i].off == 2 ? m->v_bool
					      : m->t0_ne1;
		uint8_t *p = patched(ref, off, &ok[i].v, (size_t)ok[i].n);
		char err[256];
		uint8_t *copy;
		gguf_file *f = open_copy(p, ref->len, err, sizeof err, &copy);
		CHECK(f != NULL);
		if (!f)
			fprintf(stderr, "variant '%s' rejected: %s\n", ok[i].what, err);
		gguf_close(f);
		free(copy);
		free(p);
	}
}

/* gguf_open on real paths: message names the path. */
static void test_open_paths(const struct wbuf *ref)
{
	char path[] = "/tmp/test_gguf_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	char err[512];
	/* empty file */
	gguf_file *f = gguf_open(path, err, sizeof err);
	CHECK(f == NULL && strncmp(err, path, strlen(path)) == 0);
	/* valid file */
	CHECK(write(fd, ref->p, ref->len) == (ssize_t)ref->len);
	f = gguf_open(path, err, sizeof err);
	CHECK(f != NULL);
	if (f) {
		const struct gguf_tensor *t = gguf_find_tensor(f, "t1");
		CHECK(t && ((const uint8_t *)t->data)[35] == 35);
		gguf_prefetch(f);
		gguf_close(f);
	}
	/* truncated file */
	CHECK(ftruncate(fd, (off_t)ref->len - 1) == 0);
	f = gguf_open(path, err, sizeof err);
	CHECK(f == NULL && strncmp(err, path, strlen(path)) == 0 && strstr(err, "offset"));
	close(fd);
	unlink(path);
	f = gguf_open(path, err, sizeof err);
	CHECK(f == NULL && strstr(err, "No such file"));
	f = gguf_open("/tmp", err, sizeof err);
	CHECK(f == NULL && strstr(err, "not a regular file"));
	/* tiny error buffers stay terminated */
	char tiny[8];
	f = gguf_open_memory(ref->p, 3, "x", tiny, sizeof tiny);
	CHECK(f == NULL && strlen(tiny) == 7);
	f = gguf_open_memory(NULL, 0, NULL, NULL, 0);
	CHECK(f == NULL);
}

/* Resident KiB of the mapping that holds ADDR (its Rss line in
 * /proc/self/smaps): a figure no allocation elsewhere in the process moves
 * (a sanitizer's allocator touches pages of its own between two
 * readings); -1 when unknown. */
static long mapping_rss_kb(const void *addr)
{
	FILE *fp = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;
	long kb = -1;
	while (fp && fgets(line, sizeof line, fp)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
			break;
	}
	if (fp)
		fclose(fp);
	return kb;
}

/* gguf_release drops the resident pages of mapped tensor data (and a later
 * read faults the same bytes in again); memory that is not a mapping is
 * left alone. */
static void test_release(const struct wbuf *ref)
{
	const char *src = getenv("TTYCHAT_SRCDIR");
	char path[4096], err[512];
	snprintf(path, sizeof path, "%s/tests/fixtures/engine/random/llama3-f16.gguf", src ? src : ".");
	gguf_file *f = gguf_open(path, err, sizeof err);
	CHECK(f != NULL);
	if (!f)
		return;
	const struct gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
	CHECK(t && t->size >= 64 * 1024);
	if (t && t->size >= 64 * 1024) {
		const long page = sysconf(_SC_PAGESIZE);
		unsigned sum = 0, again = 0;
		for (uint64_t i = 0; i < t->size; i++)
			sum += ((const uint8_t *)t->data)[i];
		long before = mapping_rss_kb(t->data);
		gguf_release(f, t->data, t->size);
		long after = mapping_rss_kb(t->data);
		CHECK(before > 0 && (before - after) * 1024 >= (long)t->size - 2 * page);
		for (uint64_t i = 0; i < t->size; i++)
			again += ((const uint8_t *)t->data)[i];
		CHECK(again == sum);
	}
	gguf_close(f);
	/* a caller-owned buffer is not a mapping: untouched */
	f = gguf_open_memory(ref->p, ref->len, "mem", err, sizeof err);
	CHECK(f != NULL);
	if (f) {
		const struct gguf_tensor *t1 = gguf_find_tensor(f, "t1");
		gguf_release(f, t1->data, t1->size);
		CHECK(((const uint8_t *)t1->data)[35] == 35);
		gguf_close(f);
	}
}

/* ---- part three: real models ---- */

struct model_facts {
	const char *file, *arch;
	uint64_t n_kv, n_tensors, params, tensor_bytes, layers, vocab, bos, eos;
	const char *tok0, *tok_last;
	uint64_t embd_offset; /* absolute offset of token_embd.weight */
	uint64_t embd_ne0, embd_ne1;
};

static const struct model_facts models[] = {
	{"SmolLM2-135M-Instruct.Q4_1.gguf", "llama", 33, 272, 134515008, 96576768, 30, 49152, 1,
	 2, "<|endoftext|>", "ectable", 1785664, 576, 49152},
	{"gemma-3-270m-it-Q4_K_M.gguf", "gemma3", 33, 236, 268098176, 246587904, 18, 262144, 2,
	 1, "<pad>", "<unused6241>", 6527680, 640, 262144},
};

static int test_model(const char *dir, const struct model_facts *mf)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, mf->file);
	if (access(path, R_OK) != 0) {
		printf("SKIP real model %s: not present\n", path);
		return 0;
	}
	char err[512];
	gguf_file *f = gguf_open(path, err, sizeof err);
	CHECK(f != NULL);
	if (!f) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct gguf_str s;
	CHECK(gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, mf->arch));
	CHECK(gguf_version(f) == 3);
	CHECK(gguf_n_kv(f) == mf->n_kv && gguf_n_tensors(f) == mf->n_tensors);
	char key[128];
	uint64_t u = 0;
	snprintf(key, sizeof key, "%s.block_count", mf->arch);
	CHECK(gguf_get_uint(f, key, &u) && u == mf->layers);
	CHECK(gguf_get_uint(f, "tokenizer.ggml.bos_token_id", &u) && u == mf->bos);
	CHECK(gguf_get_uint(f, "tokenizer.ggml.eos_token_id", &u) && u == mf->eos);
	int64_t ti = gguf_find_key(f, "tokenizer.ggml.tokens");
	CHECK(ti >= 0 && gguf_arr_len(f, (uint64_t)ti) == mf->vocab);
	CHECK(gguf_str_eq(gguf_arr_str_at(f, ti, 0), mf->tok0));
	CHECK(gguf_str_eq(gguf_arr_str_at(f, ti, mf->vocab - 1), mf->tok_last));
	/* every string lies inside the file */
	const uint8_t *base = gguf_base(f), *end = base + gguf_file_size(f);
	uint64_t bad = 0;
	for (uint64_t j = 0; j < mf->vocab; j++) {
		s = gguf_arr_str_at(f, ti, j);
		if (!s.ptr || (const uint8_t *)s.ptr < base || s.len > (uint64_t)(end - (const uint8_t *)s.ptr))
			bad++;
	}
	CHECK(bad == 0);
	uint64_t params = 0, bytes = 0, misfound = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(f, i);
		params += t->n_elements;
		bytes += t->size;
		char name[256];
		snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
		if (gguf_find_tensor(f, name) != t)
			misfound++;
	}
	CHECK(params == mf->params && bytes == mf->tensor_bytes && misfound == 0);
	const struct gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
	CHECK(e && e->type == GGML_TYPE_Q8_0 && e->ne[0] == mf->embd_ne0 &&
	      e->ne[1] == mf->embd_ne1);
	CHECK(e && (const uint8_t *)e->data - base == (ptrdiff_t)mf->embd_offset);
	gguf_close(f);
	return 0;
}

/* `make fuzz` seeds its corpus with the reference file through this. */
static void write_seed(const char *dir, const struct wbuf *ref)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/reference.gguf", dir);
	FILE *fp = fopen(path, "wb");
	if (!fp || fwrite(ref->p, 1, ref->len, fp) != ref->len || fclose(fp) != 0) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(99);
	}
}

int main(void)
{
	struct wbuf ref = {0};
	struct marks m;
	build(&ref, &m, 2);
	const char *seed_dir = getenv("TEST_GGUF_SEED_DIR");
	if (seed_dir && *seed_dir)
		write_seed(seed_dir, &ref);

	test_types();
	test_reference(&ref, &m);
	test_accepted_variants(&ref, &m);
	test_malformed(&ref, &m);
	test_open_paths(&ref);
	test_release(&ref);

	const char *dir = getenv("TTYCHAT_MODELS_DIR");
	if (dir && *dir) {
		for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
			test_model(dir, &models[i]);
	} else {
		printf("SKIP real models: TTYCHAT_MODELS_DIR not set\n");
	}
	free(ref.p);
	printf("test_gguf: %d checks, %d malformed files rejected (%zu truncations), %d failed\n",
	       n_checks, n_rejected, ref.len, n_failed);
	return n_failed ? 1 : 0;
}
