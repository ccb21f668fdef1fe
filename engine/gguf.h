/*
 * gguf.h - read-only access to GGUF model files (versions 2 and 3).
 *
 * The whole file is memory-mapped once; every key, string, array and tensor
 * returned points into that mapping and lives exactly as long as the
 * gguf_file handle.  Nothing here copies tensor data.
 *
 * The file is treated as hostile: gguf_open() validates every count, length,
 * offset and shape against the file size and against overflow before it
 * returns, so a successful open means every accessor below is safe to call
 * with any index in range.  On failure gguf_open() returns NULL and writes a
 * one-line message ("FILE: offset N: problem" or "FILE: key 'K': problem")
 * into the caller's buffer.
 *
 * Thread rules: a gguf_file is immutable after gguf_open(); any number of
 * threads may read it concurrently.  gguf_close() must not race with readers.
 */
#ifndef TTYCHAT_GGUF_H
#define TTYCHAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml tensor types, numbered as in the GGUF format. */
enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	/* 4 and 5 (Q4_2, Q4_3) were removed from the format */
	GGML_TYPE_Q5_0 = 6,
	GGML_TYPE_Q5_1 = 7,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_Q8_1 = 9,
	GGML_TYPE_Q2_K = 10,
	GGML_TYPE_Q3_K = 11,
	GGML_TYPE_Q4_K = 12,
	GGML_TYPE_Q5_K = 13,
	GGML_TYPE_Q6_K = 14,
	GGML_TYPE_Q8_K = 15,
	GGML_TYPE_IQ2_XXS = 16,
	GGML_TYPE_IQ2_XS = 17,
	GGML_TYPE_IQ3_XXS = 18,
	GGML_TYPE_IQ1_S = 19,
	GGML_TYPE_IQ4_NL = 20,
	GGML_TYPE_IQ3_S = 21,
	GGML_TYPE_IQ2_S = 22,
	GGML_TYPE_IQ4_XS = 23,
	GGML_TYPE_I8 = 24,
	GGML_TYPE_I16 = 25,
	GGML_TYPE_I32 = 26,
	GGML_TYPE_I64 = 27,
	GGML_TYPE_F64 = 28,
	GGML_TYPE_IQ1_M = 29,
	GGML_TYPE_BF16 = 30,
	/* 31-33 (Q4_0_4_4 ...) were removed from the format */
	GGML_TYPE_TQ1_0 = 34,
	GGML_TYPE_TQ2_0 = 35,
	/* 36-38 (IQ4_NL_4_4 ...) were removed from the format */
	GGML_TYPE_MXFP4 = 39,
	GGML_TYPE_NVFP4 = 40,
	GGML_TYPE_Q1_0 = 41,
	GGML_TYPE_Q2_0 = 42,
	GGML_TYPE_COUNT = 43,
};

/* Elements per block and bytes per block of a tensor type; both 0 for a
 * number that is not a known type. */
uint32_t ggml_type_block_size(uint32_t type);
uint32_t ggml_type_block_bytes(uint32_t type);
/* "Q4_K", "F16", ...; "?" for an unknown number. */
const char *ggml_type_name(uint32_t type);
/* Bytes of a row of n elements, or 0 when n is not a multiple of the block
 * size or the type is unknown. */
size_t ggml_row_bytes(uint32_t type, uint64_t n);

/* Metadata value types, numbered as in the GGUF format. */
enum gguf_vtype {
	GGUF_VT_UINT8 = 0,
	GGUF_VT_INT8 = 1,
	GGUF_VT_UINT16 = 2,
	GGUF_VT_INT16 = 3,
	GGUF_VT_UINT32 = 4,
	GGUF_VT_INT32 = 5,
	GGUF_VT_FLOAT32 = 6,
	GGUF_VT_BOOL = 7,
	GGUF_VT_STRING = 8,
	GGUF_VT_ARRAY = 9,
	GGUF_VT_UINT64 = 10,
	GGUF_VT_INT64 = 11,
	GGUF_VT_FLOAT64 = 12,
	GGUF_VT_COUNT = 13,
};

/* A string inside the mapping: NOT NUL-terminated. */
struct gguf_str {
	const char *ptr;
	uint64_t len;
};

/* Caps applied while parsing (a file exceeding one is rejected). */
#define GGUF_MAX_STRING (1u << 24)        /* bytes in one string */
#define GGUF_MAX_ARRAY (1u << 26)         /* elements in one array */
#define GGUF_MAX_KEYS 65536
#define GGUF_MAX_TENSORS 65536
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 4                /* arrays of arrays of ... */

struct gguf_tensor {
	struct gguf_str name;
	uint32_t type;               /* enum ggml_type */
	uint32_t n_dims;             /* 1..4 */
	uint64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the row length; unused dims are 1 */
	uint64_t n_elements;
	uint64_t offset;             /* relative to the data section */
	uint64_t size;               /* bytes */
	const void *data;            /* inside the mapping */
};

typedef struct gguf_file gguf_file;

/* Opens and validates PATH.  Returns NULL on failure with a one-line message
 * in err (always NUL-terminated when errlen > 0) and errno ENOMEM when memory
 * ran out (else EINVAL for a malformed file, or what open/fstat/mmap said). */
gguf_file *gguf_open(const char *path, char *err, size_t errlen);
/* Same, on a caller-owned buffer (fuzzing, tests).  The buffer must outlive
 * the handle; NAME is used in messages. */
gguf_file *gguf_open_memory(const void *buf, size_t len, const char *name,
			    char *err, size_t errlen);
void gguf_close(gguf_file *f);
/* gguf_open for a model: when PATH is the first part of a model split by
 * llama-gguf-split (split.count > 1; named PREFIX-00001-of-0000N.gguf), the
 * other parts are opened beside it and their tensors join this handle's
 * (gguf_find_tensor, gguf_tensor_at see every part; gguf_file_size is the
 * size of all parts; metadata is the first part's).  A missing or
 * mismatched part, or a later part given instead of the first, is a
 * one-line error. */
gguf_file *gguf_open_model(const char *path, char *err, size_t errlen);
/* Asks the kernel to start reading the whole data section in the
 * background (madvise WILLNEED); a hint only, no effect on memory handles.
 * Call it when the weights are about to be used, not for inspection. */
void gguf_prefetch(const gguf_file *f);

/* Drops the resident pages of the N mapped bytes at P (whole pages inside
 * the range, in whichever part of F holds it): the memory goes back to
 * the page cache, and a later read of those bytes faults them in again
 * from the file.  For weights copied elsewhere (packed).  No effect on
 * memory that is not F's mapping. */
void gguf_release(const gguf_file *f, const void *p, size_t n);

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f);   /* start of the data section */
const void *gguf_base(const gguf_file *f);        /* start of the mapping */

/* ---- metadata ---- */
uint64_t gguf_n_kv(const gguf_file *f);
/* Index of KEY or -1. */
int64_t gguf_find_key(const gguf_file *f, const char *key);
struct gguf_str gguf_key_name(const gguf_file *f, uint64_t i);
uint32_t gguf_kv_type(const gguf_file *f, uint64_t i);      /* enum gguf_vtype */
/* For arrays: element type and count (0 and 0 for a non-array). */
uint32_t gguf_arr_type(const gguf_file *f, uint64_t i);
uint64_t gguf_arr_len(const gguf_file *f, uint64_t i);

/* Typed getters by key.  Each returns true and stores the value only when
 * the key exists with exactly that type; otherwise returns false and leaves
 * *out alone. gguf_get_uint accepts any unsigned or non-negative signed
 * integer type (files disagree on u32 vs i32). */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i32(const gguf_file *f, const char *key, int32_t *out);
bool gguf_get_uint(const gguf_file *f, const char *key, uint64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, struct gguf_str *out);

/* Arrays by key: element type must match.  For string arrays, strings are
 * fetched one by one with gguf_arr_str (O(1) after open: offsets are
 * indexed).  For numeric arrays, *data points at the packed little-endian
 * elements in the mapping (may be unaligned: use memcpy); for string and
 * array elements it points at their serialized form. */
bool gguf_get_arr(const gguf_file *f, const char *key, uint32_t want_type,
		  uint64_t *n, const void **data);
bool gguf_get_arr_str_n(const gguf_file *f, const char *key, uint64_t *n);
/* Element J of the string array under KEY; {NULL,0} when out of range or
 * not a string array. */
struct gguf_str gguf_arr_str(const gguf_file *f, const char *key, uint64_t j);
/* Same by key index (faster in loops). */
struct gguf_str gguf_arr_str_at(const gguf_file *f, int64_t key_index, uint64_t j);

/* Value of key I rendered as short text for display ("[151936 strings]"
 * for long arrays).  Writes at most buflen bytes, NUL-terminated. */
void gguf_kv_to_string(const gguf_file *f, uint64_t i, char *buf, size_t buflen);

/* ---- tensors ---- */
uint64_t gguf_n_tensors(const gguf_file *f);
const struct gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
/* NULL when absent. */
const struct gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Helper: compare a gguf_str with a C string. */
bool gguf_str_eq(struct gguf_str s, const char *c);

#endif
