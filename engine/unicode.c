/*
 * unicode.c - code-point flags and UTF-8 coding for the tokenizer.
 *
 * The flags table is two-level (a block index per 256 code points, then
 * shared 256-byte blocks), generated offline into unicode_data.h so that a
 * lookup is two loads.  Decoding comes in two flavours on purpose: the
 * lenient one reproduces llama.cpp's reading of text (so token ids match
 * exactly, even for broken input), the strict checker is what the streaming
 * detokenizer uses so that nothing invalid ever reaches a terminal.
 */
#include "unicode.h"

#include "unicode_data.h"

_Static_assert(sizeof unicode_flags_stage1 == (UNICODE_MAX_CPT >> 8), "stage1 covers all planes");
_Static_assert(sizeof unicode_flags_stage2 % 256 == 0, "stage2 is whole blocks");

uint32_t unicode_decode_lenient(const unsigned char *s, size_t n, size_t *used)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cpt;

	if (c < 0x80) {
		*used = 1;
		return c;
	}
	if (!(c & 0x40))
		goto bad;
	if (!(c & 0x20)) {
		len = 2;
		cpt = c & 0x1f;
	} else if (!(c & 0x10)) {
		len = 3;
		cpt = c & 0x0f;
	} else if (!(c & 0x08)) {
		len = 4;
		cpt = c & 0x07;
	} else {
		goto bad;
	}
	if (n < len)
		goto bad;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			goto bad;
		cpt = (cpt << 6) | (s[i] & 0x3f);
	}
	*used = len;
	return cpt;
bad:
	*used = 1;
	return UNICODE_REPLACEMENT;
}

size_t unicode_encode(uint32_t cpt, char out[4])
{
	if (cpt < 0x80) {
		out[0] = (char)cpt;
		return 1;
	}
	if (cpt < 0x800) {
		out[0] = (char)(0xc0 | (cpt >> 6));
		out[1] = (char)(0x80 | (cpt & 0x3f));
		return 2;
	}
	if (cpt >= UNICODE_MAX_CPT)
		cpt = UNICODE_REPLACEMENT;
	if (cpt < 0x10000) {
		out[0] = (char)(0xe0 | (cpt >> 12));
		out[1] = (char)(0x80 | ((cpt >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cpt & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cpt >> 18));
	out[1] = (char)(0x80 | ((cpt >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cpt >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cpt & 0x3f));
	return 4;
}

int unicode_utf8_check(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;  /* allowed range of the 2nd byte */
	int len;

	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return -1;
	if (c < 0xe0) {
		len = 2;
	} else if (c < 0xf0) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;           /* no overlongs */
		else if (c == 0xed)
			hi = 0x9f;           /* no surrogates */
	} else if (c < 0xf5) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;           /* nothing past U+10FFFF */
	} else {
		return -1;
	}
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return 0;
		unsigned char b = s[i];
		if (i == 1 ? (b < lo || b > hi) : (b & 0xc0) != 0x80)
			return -i;
	}
	return len;
}
