/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Every input is opened with gguf_open_memory(); when the reader accepts
 * it, every accessor is exercised over the whole surface the engine uses
 * (keys, typed getters, string arrays, display, tensors and their data), so
 * that a check missing in gguf_open() shows up as an ASan/UBSan report
 * rather than passing silently.  Built by `make fuzz` only (clang), never
 * part of `make check`.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(struct gguf_str s)
{
	if (s.len)
		sink ^= (uint8_t)(s.ptr[0] ^ s.ptr[s.len - 1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	gguf_file *f = gguf_open_memory(data, size, "fuzz", err, sizeof err);
	if (!f) {
		/* a rejection must leave a one-line message */
		if (err[0] == '\0' || strchr(err, '\n'))
			__builtin_trap();
		return 0;
	}
	char buf[256], name[512];
	for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
		struct gguf_str k = gguf_key_name(f, i);
		touch(k);
		gguf_kv_to_string(f, i, buf, sizeof buf);
		if (k.len < sizeof name && !memchr(k.ptr, '\0', k.len)) {
			memcpy(name, k.ptr, k.len);
			name[k.len] = '\0';
			if (gguf_find_key(f, name) != (int64_t)i)
				__builtin_trap();
			uint32_t u32;
			int32_t i32;
			uint64_t u64, n;
			float fl;
			bool b;
			struct gguf_str s;
			const void *p;
			gguf_get_u32(f, name, &u32);
			gguf_get_i32(f, name, &i32);
			gguf_get_uint(f, name, &u64);
			gguf_get_f32(f, name, &fl);
			gguf_get_bool(f, name, &b);
			if (gguf_get_str(f, name, &s))
				touch(s);
			if (gguf_get_arr(f, name, gguf_arr_type(f, i), &n, &p) && n && p)
				sink ^= *(const uint8_t *)p;
			gguf_get_arr_str_n(f, name, &n);
		}
		if (gguf_kv_type(f, i) == GGUF_VT_ARRAY && gguf_arr_type(f, i) == GGUF_VT_STRING)
			for (uint64_t j = 0; j <= gguf_arr_len(f, i); j++)
				touch(gguf_arr_str_at(f, (int64_t)i, j));
	}
	for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(f, i);
		touch(t->name);
		if (t->size) {
			const uint8_t *d = t->data;
			sink ^= (uint8_t)(d[0] ^ d[t->size - 1]);
		}
		if (t->name.len < sizeof name && !memchr(t->name.ptr, '\0', t->name.len)) {
			memcpy(name, t->name.ptr, t->name.len);
			name[t->name.len] = '\0';
			if (gguf_find_tensor(f, name) != t)
				__builtin_trap();
		}
	}
	gguf_close(f);
	return 0;
}
