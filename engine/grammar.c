/*
 * grammar.c - see grammar.h.
 *
 * A stack set is a flat buffer of positions plus (offset, length) pairs
 * and a hash table that keeps its stacks distinct, so ambiguous grammars
 * do not multiply identical stacks.  Expansion (replacing a rule reference
 * on top by each of its alternatives until every top is a terminal) runs
 * on an explicit work list, never on the C stack; a reference whose
 * continuation is the end of its alternative leaves nothing behind (a tail
 * call), so right recursion such as x* keeps stacks shallow.
 *
 * The vocabulary trie has a node per distinct prefix of the tokens' bytes
 * (first-child / next-sibling links).  grammar_mask() walks it depth
 * first with one scratch stack set per depth; a prefix ending inside a
 * UTF-8 character keeps its parent's set and only checks that some class
 * can still match.  Tokens longer than TRIE_MAX_DEPTH bytes stay out of
 * the trie and are checked one by one.
 */
#include "grammar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "engine.h"

#define TRIE_MAX_DEPTH 256u
#define NONE UINT32_MAX
#define DEAD (UINT32_MAX - 1)
#define MAX_STATES 8192u        /* past this, the next mask starts the automaton afresh */
#define MAX_MEMO (1u << 19)
#define MASK_CACHE 4

struct stk {
	uint32_t off, len;
};

struct sset {
	uint32_t *data;
	size_t nd, capd;
	struct stk *st;
	uint32_t n, cap;
	uint32_t *ht;     /* stack index + 1; 0 free */
	uint32_t htcap;   /* power of two */
};

struct tnode {
	uint32_t child, sibling; /* NONE-terminated */
	uint32_t tok;            /* first token ending here, or NONE */
	uint8_t byte;
};

struct grammar_vocab {
	uint32_t n;
	char **piece;
	uint32_t *len;
	uint8_t *kind;
	struct tnode *node;      /* node[0] is the root */
	uint32_t n_nodes;
	uint32_t *next_tok;      /* next token with the same bytes, or NONE */
	uint32_t *eog;           /* ids of end-of-generation tokens */
	uint32_t n_eog;
	uint32_t *long_tok;      /* text tokens left out of the trie */
	uint32_t n_long;
};

/* a pending UTF-8 character: value so far, bytes still due, its length */
struct partial {
	uint32_t v;
	uint8_t need, len;
};

struct grammar {
	const struct gbnf *g;
	const grammar_vocab *v;
	struct sset cur;
	struct partial pc;
	struct sset tmp[3];
	/* the lazy automaton grammar_mask() walks with: stack sets interned
	 * as states (canonical order), and a memo (state, character) -> state */
	struct sset *states;
	uint32_t n_states, cap_states;
	uint32_t *state_ht;      /* state id + 1; 0 free */
	uint32_t state_htcap;
	uint32_t *ascii;         /* per state, 128 next states for ASCII (NONE: not yet known) */
	size_t cap_ascii;        /* in states */
	/* beyond ASCII: (state, which stacks take the character) -> state,
	 * since that set alone decides the next state; most characters of a
	 * vocabulary share a few such sets */
	uint32_t *sig_id;        /* state + 1; 0 free */
	uint64_t *sig_mask;
	uint32_t *sig_val;
	uint32_t sig_cap, sig_n;
	uint64_t *memo_key;      /* (state << 21 | cp) + 1; 0 free */
	uint32_t *memo_val;      /* next state, or DEAD */
	uint32_t memo_cap, memo_n;
	/* masks of recent states: the allowed tokens, by state */
	struct mask_cache { uint32_t state; int64_t n_allowed; uint8_t *allowed; uint64_t used; } mc[MASK_CACHE];
	uint64_t mc_clock;
	/* expansion work list: stacks in a flat buffer, LIFO */
	uint32_t *wdata;
	size_t wnd, wcap;
	struct stk *wst;
	uint32_t wn, wstcap;
	uint32_t *one;           /* the stack being expanded */
	size_t onecap;
	uint8_t *allowed;
	int64_t n_allowed;
};

/* ---- stack sets ---- */

static void sset_free(struct sset *s)
{
	free(s->data);
	free(s->st);
	free(s->ht);
	memset(s, 0, sizeof *s);
}

static void sset_clear(struct sset *s)
{
	s->nd = 0;
	s->n = 0;
	if (s->ht)
		memset(s->ht, 0, s->htcap * sizeof *s->ht);
}

static uint32_t stack_hash(const uint32_t *v, uint32_t len)
{
	uint32_t h = 2166136261u ^ len;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ v[i]) * 16777619u;
	return h;
}

static bool grow_buf(void **p, size_t *cap, size_t need, size_t sz)
{
	if (need <= *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 64;
	while (nc < need)
		nc *= 2;
	void *q = eng_realloc(*p, nc * sz);
	if (!q)
		return false;
	*p = q;
	*cap = nc;
	return true;
}

static bool sset_rehash(struct sset *s, uint32_t cap)
{
	uint32_t *ht = eng_calloc(cap, sizeof *ht);
	if (!ht)
		return false;
	free(s->ht);
	s->ht = ht;
	s->htcap = cap;
	for (uint32_t i = 0; i < s->n; i++) {
		uint32_t h = stack_hash(s->data + s->st[i].off, s->st[i].len) & (cap - 1);
		while (ht[h])
			h = (h + 1) & (cap - 1);
		ht[h] = i + 1;
	}
	return true;
}

/* Adds stack v[0..len) unless the set has it. */
static int sset_add(struct sset *s, const uint32_t *v, uint32_t len)
{
	if ((uint64_t)(s->n + 1) * 2 > s->htcap && !sset_rehash(s, s->htcap ? s->htcap * 2 : 16))
		return GRAMMAR_E_NOMEM;
	uint32_t h = stack_hash(v, len) & (s->htcap - 1);
	for (; s->ht[h]; h = (h + 1) & (s->htcap - 1)) {
		const struct stk *o = &s->st[s->ht[h] - 1];
		if (o->len == len && (!len || memcmp(s->data + o->off, v, len * sizeof *v) == 0))
			return GRAMMAR_OK;
	}
	if (s->n >= GRAMMAR_MAX_STACKS)
		return GRAMMAR_E_LIMIT;
	size_t cst = s->cap;
	if (!grow_buf((void **)&s->data, &s->capd, s->nd + len, sizeof *s->data) ||
	    !grow_buf((void **)&s->st, &cst, (size_t)s->n + 1, sizeof *s->st))
		return GRAMMAR_E_NOMEM;
	s->cap = (uint32_t)cst;
	if (len)
		memcpy(s->data + s->nd, v, len * sizeof *v);
	s->st[s->n] = (struct stk){(uint32_t)s->nd, len};
	s->nd += len;
	s->ht[h] = ++s->n;
	return GRAMMAR_OK;
}

static int sset_copy(struct sset *dst, const struct sset *src)
{
	sset_clear(dst);
	for (uint32_t i = 0; i < src->n; i++) {
		int rc = sset_add(dst, src->data + src->st[i].off, src->st[i].len);
		if (rc)
			return rc;
	}
	return GRAMMAR_OK;
}

static inline uint32_t top_of(const struct sset *s, uint32_t i)
{
	return s->st[i].len ? s->data[s->st[i].off + s->st[i].len - 1] : NONE;
}

/* ---- expansion ---- */

static int work_push(grammar *m, const uint32_t *base, uint32_t blen, uint32_t extra)
{
	uint32_t len = blen + (extra != NONE);
	if (len > GRAMMAR_MAX_DEPTH)
		return GRAMMAR_E_LIMIT;
	size_t cst = m->wstcap;
	if (!grow_buf((void **)&m->wdata, &m->wcap, m->wnd + len, sizeof *m->wdata) ||
	    !grow_buf((void **)&m->wst, &cst, (size_t)m->wn + 1, sizeof *m->wst))
		return GRAMMAR_E_NOMEM;
	m->wstcap = (uint32_t)cst;
	if (blen)
		memcpy(m->wdata + m->wnd, base, blen * sizeof *base);
	if (extra != NONE)
		m->wdata[m->wnd + blen] = extra;
	m->wst[m->wn++] = (struct stk){(uint32_t)m->wnd, len};
	m->wnd += len;
	return GRAMMAR_OK;
}

/* Expands stack v[0..len) (its top may be a reference or an end) into
 * OUT, where every top is a terminal or the stack is empty. */
static int expand(grammar *m, struct sset *out, const uint32_t *v, uint32_t len)
{
	const struct gbnf *g = m->g;
	int rc = work_push(m, v, len, NONE);
	/* each step pops one stack and pushes at most a rule's alternatives;
	 * bounded because the grammar has no left recursion, and budgeted
	 * against blow-ups all the same */
	uint64_t budget = 64ull * GRAMMAR_MAX_STACKS;
	while (!rc && m->wn) {
		struct stk w = m->wst[--m->wn];
		if (!grow_buf((void **)&m->one, &m->onecap, (size_t)w.len + 1, sizeof *m->one)) {
			rc = GRAMMAR_E_NOMEM;
			break;
		}
		if (w.len)
			memcpy(m->one, m->wdata + w.off, w.len * sizeof *m->one);
		m->wnd = w.off;
		uint32_t n = w.len;
		while (n && g->syms[m->one[n - 1]].kind == GBNF_END)
			n--;
		if (!n || g->syms[m->one[n - 1]].kind != GBNF_REF) {
			rc = sset_add(out, m->one, n);
			continue;
		}
		if (!budget--) {
			rc = GRAMMAR_E_LIMIT;
			break;
		}
		uint32_t pos = m->one[n - 1];
		const struct gbnf_rule *r = &g->rules[g->syms[pos].arg];
		/* the continuation replaces the reference; none when the
		 * reference ends its alternative */
		if (g->syms[pos + 1].kind == GBNF_END)
			n--;
		else
			m->one[n - 1] = pos + 1;
		for (uint32_t a = r->n_alts; a-- > 0 && !rc;)
			rc = work_push(m, m->one, n, g->alts[r->first_alt + a]);
	}
	m->wn = 0;
	m->wnd = 0;
	return rc;
}

/* OUT = the stacks of IN whose top class admits CP, advanced and expanded. */
static int advance_cp(grammar *m, const struct sset *in, uint32_t cp, struct sset *out)
{
	const struct gbnf *g = m->g;
	sset_clear(out);
	for (uint32_t i = 0; i < in->n; i++) {
		uint32_t t = top_of(in, i);
		if (t == NONE || g->syms[t].kind != GBNF_CLASS || !gbnf_class_has(g, g->syms[t].arg, cp))
			continue;
		const struct stk *s = &in->st[i];
		/* copy first: expand() reuses m->one */
		uint32_t tmp[64];
		uint32_t *buf = s->len <= 64 ? tmp : NULL;
		if (!buf && !(buf = eng_malloc(s->len * sizeof *buf)))
			return GRAMMAR_E_NOMEM;
		memcpy(buf, in->data + s->off, s->len * sizeof *buf);
		buf[s->len - 1] = t + 1;
		int rc = expand(m, out, buf, s->len);
		if (buf != tmp)
			free(buf);
		if (rc)
			return rc;
	}
	return GRAMMAR_OK;
}

/* OUT = the stacks of IN whose top token element admits token ID. */
static int advance_tok(grammar *m, const struct sset *in, int32_t id, struct sset *out)
{
	const struct gbnf *g = m->g;
	for (uint32_t i = 0; i < in->n; i++) {
		uint32_t t = top_of(in, i);
		if (t == NONE)
			continue;
		const struct gbnf_sym *s = &g->syms[t];
		if (!((s->kind == GBNF_TOKEN && s->arg == (uint32_t)id) ||
		      (s->kind == GBNF_TOKEN_NOT && s->arg != (uint32_t)id &&
		       m->v->kind[id] != GRAMMAR_TOK_EOG)))
			continue;
		const struct stk *st = &in->st[i];
		uint32_t *buf = eng_malloc(st->len * sizeof *buf);
		if (!buf)
			return GRAMMAR_E_NOMEM;
		memcpy(buf, in->data + st->off, st->len * sizeof *buf);
		buf[st->len - 1] = t + 1;
		int rc = expand(m, out, buf, st->len);
		free(buf);
		if (rc)
			return rc;
	}
	return GRAMMAR_OK;
}

/* ---- UTF-8 ---- */

/* Feeds byte B: 1 when a character is complete (in p->v), 0 when more
 * bytes are due, -1 on invalid UTF-8. */
static int utf8_step(struct partial *p, uint8_t b)
{
	if (!p->need) {
		if (b < 0x80) {
			p->v = b;
			return 1;
		}
		if ((b & 0xe0) == 0xc0 && b >= 0xc2)
			*p = (struct partial){b & 0x1fu, 1, 2};
		else if ((b & 0xf0) == 0xe0)
			*p = (struct partial){b & 0x0fu, 2, 3};
		else if ((b & 0xf8) == 0xf0 && b <= 0xf4)
			*p = (struct partial){b & 0x07u, 3, 4};
		else
			return -1;
		return 0;
	}
	if ((b & 0xc0) != 0x80)
		return -1;
	p->v = p->v << 6 | (b & 0x3fu);
	if (--p->need)
		return 0;
	uint32_t v = p->v;
	if ((p->len == 3 && v < 0x800) || (p->len == 4 && (v < 0x10000 || v > 0x10ffff)) || (v >= 0xd800 && v <= 0xdfff))
		return -1;
	return 1;
}

/* Whether class C admits some code point in [lo, hi]. */
static bool class_meets(const struct gbnf *g, uint32_t c, uint32_t lo, uint32_t hi)
{
	const struct gbnf_class *k = &g->classes[c];
	const struct gbnf_range *r = g->ranges + k->first_range;
	if (!k->negated) {
		for (uint32_t i = 0; i < k->n_ranges; i++)
			if (r[i].lo <= hi && lo <= r[i].hi)
				return true;
		return false;
	}
	/* negated: some point of [lo, hi] lies outside every range */
	uint32_t x = lo;
	for (;;) {
		bool moved = false;
		for (uint32_t i = 0; i < k->n_ranges; i++)
			if (r[i].lo <= x && x <= r[i].hi) {
				if (r[i].hi >= hi)
					return false;
				x = r[i].hi + 1;
				moved = true;
			}
		if (!moved)
			return true;
	}
}

/* Whether some stack of S can take a character that starts as P does. */
static bool partial_viable(const struct gbnf *g, const struct sset *s, const struct partial *p)
{
	uint32_t shift = 6u * p->need;
	uint32_t lo = p->v << shift, hi = lo | ((1u << shift) - 1);
	static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (lo < min_of_len[p->len])
		lo = min_of_len[p->len];
	if (hi > 0x10ffff)
		hi = 0x10ffff;
	/* surrogates never complete (utf8_step refuses them) */
	if (lo >= 0xd800 && lo <= 0xdfff)
		lo = 0xe000;
	if (hi >= 0xd800 && hi <= 0xdfff)
		hi = 0xd7ff;
	if (lo > hi)
		return false;
	for (uint32_t i = 0; i < s->n; i++) {
		uint32_t t = top_of(s, i);
		if (t != NONE && g->syms[t].kind == GBNF_CLASS && class_meets(g, g->syms[t].arg, lo, hi))
			return true;
	}
	return false;
}

/* Feeds bytes s[0..n) from state (IN, *P): on GRAMMAR_OK *RES points at
 * the resulting set (IN itself, or m->tmp[0] / [1]) and *P is updated; on
 * GRAMMAR_E_REJECT the text is not allowed. */
static int feed(grammar *m, const struct sset *in, struct partial *p, const char *s, size_t n,
		const struct sset **res)
{
	const struct sset *cur = in;
	struct partial q = *p;
	int flip = 0;
	for (size_t i = 0; i < n; i++) {
		int u = utf8_step(&q, (uint8_t)s[i]);
		if (u < 0)
			return GRAMMAR_E_REJECT;
		if (u == 0)
			continue;
		struct sset *out = &m->tmp[flip];
		flip ^= 1;
		int rc = advance_cp(m, cur, q.v, out);
		if (rc)
			return rc;
		if (!out->n)
			return GRAMMAR_E_REJECT;
		cur = out;
		q.need = 0;
	}
	if (q.need && !partial_viable(m->g, cur, &q))
		return GRAMMAR_E_REJECT;
	*p = q;
	*res = cur;
	return GRAMMAR_OK;
}

/* ---- vocabulary ---- */

void grammar_vocab_free(grammar_vocab *v)
{
	if (!v)
		return;
	for (uint32_t i = 0; v->piece && i < v->n; i++)
		free(v->piece[i]);
	free(v->piece);
	free(v->len);
	free(v->kind);
	free(v->node);
	free(v->next_tok);
	free(v->eog);
	free(v->long_tok);
	free(v);
}

uint32_t grammar_vocab_size(const grammar_vocab *v)
{
	return v ? v->n : 0;
}

/* qsort context: the vocabulary being sorted (qsort has no context
 * argument; a file-scope pointer would be global state, so the pieces are
 * sorted as (pointer, length, id) records instead) */
struct piece_ref {
	const char *p;
	uint32_t len, id;
};

static int piece_cmp(const void *a, const void *b)
{
	const struct piece_ref *x = a, *y = b;
	uint32_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);
	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Builds the trie from the text tokens in byte order: each token shares
 * the longest common prefix with the one before and adds its remaining
 * bytes as a new path, so nodes are laid out in depth-first order (the
 * order grammar_mask() visits them) and siblings come sorted. */
static bool trie_build(grammar_vocab *v, const uint32_t *ids, uint32_t n_ids)
{
	struct piece_ref *r = eng_malloc((n_ids ? n_ids : 1) * sizeof *r);
	if (!r)
		return false;
	size_t total = 1;
	for (uint32_t i = 0; i < n_ids; i++) {
		r[i] = (struct piece_ref){v->piece[ids[i]], v->len[ids[i]], ids[i]};
		total += r[i].len;
	}
	qsort(r, n_ids, sizeof *r, piece_cmp);
	v->node = eng_malloc(total * sizeof *v->node);
	if (!v->node) {
		free(r);
		return false;
	}
	v->node[0] = (struct tnode){NONE, NONE, NONE, 0};
	v->n_nodes = 1;
	/* path[d]: the node at depth d of the previous token; last[d]: the
	 * last child of path[d] */
	uint32_t path[TRIE_MAX_DEPTH + 1], last[TRIE_MAX_DEPTH + 1];
	uint32_t depth = 0;
	path[0] = 0;
	last[0] = NONE;
	const struct piece_ref *prev = NULL;
	for (uint32_t i = 0; i < n_ids; i++) {
		uint32_t l = 0;
		if (prev)
			while (l < prev->len && l < r[i].len && prev->p[l] == r[i].p[l])
				l++;
		depth = l;
		for (uint32_t k = l; k < r[i].len; k++) {
			uint32_t nd = v->n_nodes++;
			v->node[nd] = (struct tnode){NONE, NONE, NONE, (uint8_t)r[i].p[k]};
			if (last[k] == NONE)
				v->node[path[k]].child = nd;
			else
				v->node[last[k]].sibling = nd;
			last[k] = nd;
			path[k + 1] = nd;
			last[k + 1] = NONE;
			depth = k + 1;
		}
		/* tokens with equal bytes chain on one node, lowest id first */
		uint32_t at = path[depth];
		uint32_t *tail = &v->node[at].tok;
		while (*tail != NONE)
			tail = &v->next_tok[*tail];
		*tail = r[i].id;
		v->next_tok[r[i].id] = NONE;
		prev = &r[i];
	}
	free(r);
	return true;
}

grammar_vocab *grammar_vocab_new(uint32_t n, const char *const *piece, const uint32_t *len, const uint8_t *kind)
{
	grammar_vocab *v = eng_calloc(1, sizeof *v);
	if (!v)
		return NULL;
	v->n = n;
	size_t nn = n ? n : 1;
	v->piece = eng_calloc(nn, sizeof *v->piece);
	v->len = eng_calloc(nn, sizeof *v->len);
	v->kind = eng_calloc(nn, 1);
	v->next_tok = eng_malloc(nn * sizeof *v->next_tok);
	v->eog = eng_malloc(nn * sizeof *v->eog);
	v->long_tok = eng_malloc(nn * sizeof *v->long_tok);
	uint32_t *in_trie = eng_malloc(nn * sizeof *in_trie);
	uint32_t n_trie = 0;
	if (!v->piece || !v->len || !v->kind || !v->next_tok || !v->eog || !v->long_tok || !in_trie)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		v->len[i] = len[i];
		v->kind[i] = kind[i];
		v->next_tok[i] = NONE;
		if (!(v->piece[i] = eng_malloc(len[i] ? len[i] : 1)))
			goto fail;
		if (len[i])
			memcpy(v->piece[i], piece[i], len[i]);
		if (kind[i] == GRAMMAR_TOK_EOG)
			v->eog[v->n_eog++] = i;
		else if (kind[i] != GRAMMAR_TOK_TEXT || !len[i])
			continue;
		else if (len[i] > TRIE_MAX_DEPTH)
			v->long_tok[v->n_long++] = i;
		else
			in_trie[n_trie++] = i;
	}
	if (!trie_build(v, in_trie, n_trie))
		goto fail;
	free(in_trie);
	return v;
fail:
	free(in_trie);
	grammar_vocab_free(v);
	return NULL;
}

grammar_vocab *grammar_vocab_from_tok(const tokenizer *tk)
{
	uint32_t n = tok_n_vocab(tk);
	size_t nn = n ? n : 1;
	const char **piece = eng_malloc(nn * sizeof *piece);
	uint32_t *len = eng_malloc(nn * sizeof *len);
	uint8_t *kind = eng_malloc(nn);
	grammar_vocab *v = NULL;
	if (piece && len && kind) {
		for (uint32_t i = 0; i < n; i++) {
			size_t l = 0;
			piece[i] = tok_piece(tk, (int32_t)i, &l);
			len[i] = piece[i] && l <= UINT32_MAX ? (uint32_t)l : 0;
			kind[i] = tok_is_eog(tk, (int32_t)i)	   ? GRAMMAR_TOK_EOG
				  : tok_is_control(tk, (int32_t)i) ? GRAMMAR_TOK_CONTROL
								   : GRAMMAR_TOK_TEXT;
		}
		v = grammar_vocab_new(n, piece, len, kind);
	}
	free(piece);
	free(len);
	free(kind);
	return v;
}

/* ---- the matcher ---- */

void grammar_free(grammar *m)
{
	if (!m)
		return;
	sset_free(&m->cur);
	for (int i = 0; i < 3; i++)
		sset_free(&m->tmp[i]);
	for (uint32_t i = 0; i < m->n_states; i++)
		sset_free(&m->states[i]);
	free(m->states);
	free(m->state_ht);
	free(m->ascii);
	free(m->sig_id);
	free(m->sig_mask);
	free(m->sig_val);
	free(m->memo_key);
	free(m->memo_val);
	for (int i = 0; i < MASK_CACHE; i++)
		free(m->mc[i].allowed);
	free(m->wdata);
	free(m->wst);
	free(m->one);
	free(m->allowed);
	free(m);
}

grammar *grammar_new(const struct gbnf *g, const grammar_vocab *vocab, int *rc)
{
	int dummy;
	if (!rc)
		rc = &dummy;
	grammar *m = eng_calloc(1, sizeof *m);
	if (!m) {
		*rc = GRAMMAR_E_NOMEM;
		return NULL;
	}
	m->g = g;
	m->v = vocab;
	for (int i = 0; i < MASK_CACHE; i++)
		m->mc[i].state = NONE;
	if (vocab && !(m->allowed = eng_malloc(vocab->n ? vocab->n : 1))) {
		*rc = GRAMMAR_E_NOMEM;
		grammar_free(m);
		return NULL;
	}
	/* the start: each alternative of root */
	const struct gbnf_rule *r = &g->rules[g->root];
	*rc = GRAMMAR_OK;
	for (uint32_t a = 0; a < r->n_alts && !*rc; a++) {
		uint32_t pos = g->alts[r->first_alt + a];
		*rc = expand(m, &m->cur, &pos, 1);
	}
	if (*rc) {
		grammar_free(m);
		return NULL;
	}
	return m;
}

bool grammar_can_end(const grammar *m)
{
	if (m->pc.need)
		return false;
	for (uint32_t i = 0; i < m->cur.n; i++)
		if (!m->cur.st[i].len)
			return true;
	return false;
}

bool grammar_must_end(const grammar *m)
{
	return m->cur.n == 1 && !m->cur.st[0].len && !m->pc.need;
}

/* Whether a token element of the current stacks admits ID. */
static bool token_elem_ok(const grammar *m, int32_t id)
{
	if (m->pc.need)
		return false;
	for (uint32_t i = 0; i < m->cur.n; i++) {
		uint32_t t = top_of(&m->cur, i);
		if (t == NONE)
			continue;
		const struct gbnf_sym *s = &m->g->syms[t];
		if (s->kind == GBNF_TOKEN && s->arg == (uint32_t)id)
			return true;
		if (s->kind == GBNF_TOKEN_NOT && s->arg != (uint32_t)id && m->v->kind[id] != GRAMMAR_TOK_EOG)
			return true;
	}
	return false;
}

bool grammar_token_ok(grammar *m, int32_t id)
{
	if (!m->v || id < 0 || (uint32_t)id >= m->v->n)
		return false;
	if (token_elem_ok(m, id))
		return true;
	uint8_t k = m->v->kind[id];
	if (k == GRAMMAR_TOK_EOG)
		return grammar_can_end(m);
	if (k != GRAMMAR_TOK_TEXT || !m->v->len[id])
		return false;
	struct partial p = m->pc;
	const struct sset *res;
	return feed(m, &m->cur, &p, m->v->piece[id], m->v->len[id], &res) == GRAMMAR_OK;
}

int grammar_accept_token(grammar *m, int32_t id)
{
	if (!m->v || id < 0 || (uint32_t)id >= m->v->n)
		return GRAMMAR_E_RANGE;
	uint8_t k = m->v->kind[id];
	bool by_elem = token_elem_ok(m, id);
	if (!by_elem && k == GRAMMAR_TOK_EOG)
		return grammar_can_end(m) ? GRAMMAR_OK : GRAMMAR_E_REJECT;
	struct sset *next = &m->tmp[2];
	sset_clear(next);
	struct partial p = m->pc;
	int rc = GRAMMAR_OK;
	bool text_ok = false;
	if (k == GRAMMAR_TOK_TEXT && m->v->len[id]) {
		const struct sset *res;
		rc = feed(m, &m->cur, &p, m->v->piece[id], m->v->len[id], &res);
		if (rc == GRAMMAR_OK) {
			text_ok = true;
			rc = sset_copy(next, res);
		} else if (rc == GRAMMAR_E_REJECT) {
			rc = GRAMMAR_OK;
			p = m->pc;
		}
	}
	if (!rc && by_elem)
		rc = advance_tok(m, &m->cur, id, next);
	if (rc)
		return rc;
	if (!text_ok && !by_elem)
		return GRAMMAR_E_REJECT;
	/* a token element consumed the whole token: no character pending */
	m->pc = text_ok ? p : (struct partial){0, 0, 0};
	struct sset t = m->cur;
	m->cur = *next;
	*next = t;
	return GRAMMAR_OK;
}

int grammar_accept_text(grammar *m, const char *s, size_t n)
{
	struct partial p = m->pc;
	const struct sset *res;
	int rc = feed(m, &m->cur, &p, s, n, &res);
	if (rc)
		return rc;
	if (res != &m->cur) {
		struct sset *next = &m->tmp[2];
		if ((rc = sset_copy(next, res)))
			return rc;
		struct sset t = m->cur;
		m->cur = *next;
		*next = t;
	}
	m->pc = p;
	return GRAMMAR_OK;
}

static void allow(grammar *m, uint32_t id)
{
	if (!m->allowed[id]) {
		m->allowed[id] = 1;
		m->n_allowed++;
	}
}

/* ---- the lazy automaton ---- */

static int stk_cmp(const struct sset *s, const struct stk *a, const struct stk *b)
{
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->len ? memcmp(s->data + a->off, s->data + b->off, a->len * sizeof *s->data) : 0;
}

/* Puts the stacks of S in canonical order (insertion sort: sets are small)
 * and returns the set's hash. */
static uint64_t canon(struct sset *s)
{
	for (uint32_t i = 1; i < s->n; i++) {
		struct stk x = s->st[i];
		uint32_t j = i;
		while (j > 0 && stk_cmp(s, &s->st[j - 1], &x) > 0) {
			s->st[j] = s->st[j - 1];
			j--;
		}
		s->st[j] = x;
	}
	/* the dedup table indexes stacks by position: reindex */
	if (s->ht) {
		memset(s->ht, 0, s->htcap * sizeof *s->ht);
		for (uint32_t i = 0; i < s->n; i++) {
			uint32_t k = stack_hash(s->data + s->st[i].off, s->st[i].len) & (s->htcap - 1);
			while (s->ht[k])
				k = (k + 1) & (s->htcap - 1);
			s->ht[k] = i + 1;
		}
	}
	uint64_t h = 1469598103934665603ull ^ s->n;
	for (uint32_t i = 0; i < s->n; i++) {
		h = (h ^ s->st[i].len) * 1099511628211ull;
		for (uint32_t k = 0; k < s->st[i].len; k++)
			h = (h ^ s->data[s->st[i].off + k]) * 1099511628211ull;
	}
	return h;
}

static bool same_set(const struct sset *a, const struct sset *b)
{
	if (a->n != b->n)
		return false;
	for (uint32_t i = 0; i < a->n; i++)
		if (a->st[i].len != b->st[i].len ||
		    (a->st[i].len && memcmp(a->data + a->st[i].off, b->data + b->st[i].off, a->st[i].len * sizeof *a->data)))
			return false;
	return true;
}

static void automaton_reset(grammar *m)
{
	for (uint32_t i = 0; i < m->n_states; i++)
		sset_free(&m->states[i]);
	m->n_states = 0;
	if (m->state_ht)
		memset(m->state_ht, 0, m->state_htcap * sizeof *m->state_ht);
	if (m->memo_key)
		memset(m->memo_key, 0, m->memo_cap * sizeof *m->memo_key);
	m->memo_n = 0;
	if (m->sig_id)
		memset(m->sig_id, 0, m->sig_cap * sizeof *m->sig_id);
	m->sig_n = 0;
	for (int i = 0; i < MASK_CACHE; i++)
		m->mc[i].state = NONE;
}

/* The state of set S (put in canonical order): its id, DEAD when S is
 * empty, NONE when out of memory.  A walk may pass MAX_STATES (it creates
 * at most a state per trie node it visits); grammar_mask() resets the
 * automaton before the next walk. */
static uint32_t intern(grammar *m, struct sset *s)
{
	if (!s->n)
		return DEAD;
	uint64_t h = canon(s);
	if ((uint64_t)(m->n_states + 1) * 2 > m->state_htcap) {
		if (m->state_htcap >= (1u << 30))
			return NONE;
		uint32_t cap = m->state_htcap ? m->state_htcap * 2 : 256;
		uint32_t *ht = eng_calloc(cap, sizeof *ht);
		if (!ht)
			return NONE;
		for (uint32_t i = 0; i < m->n_states; i++) {
			uint64_t hi = canon(&m->states[i]);
			uint32_t k = (uint32_t)hi & (cap - 1);
			while (ht[k])
				k = (k + 1) & (cap - 1);
			ht[k] = i + 1;
		}
		free(m->state_ht);
		m->state_ht = ht;
		m->state_htcap = cap;
	}
	uint32_t k = (uint32_t)h & (m->state_htcap - 1);
	for (; m->state_ht[k]; k = (k + 1) & (m->state_htcap - 1))
		if (same_set(&m->states[m->state_ht[k] - 1], s))
			return m->state_ht[k] - 1;
	size_t cap = m->cap_states;
	if (!grow_buf((void **)&m->states, &cap, (size_t)m->n_states + 1, sizeof *m->states))
		return NONE;
	m->cap_states = (uint32_t)cap;
	if (!grow_buf((void **)&m->ascii, &m->cap_ascii, (size_t)m->n_states + 1, 128 * sizeof *m->ascii))
		return NONE;
	memset(m->ascii + (size_t)m->n_states * 128, 0xff, 128 * sizeof *m->ascii);
	struct sset *t = &m->states[m->n_states];
	memset(t, 0, sizeof *t);
	/* a plain copy keeps the canonical order (sset_copy would too, but
	 * builds a hash table the state never needs) */
	t->data = eng_malloc((s->nd ? s->nd : 1) * sizeof *t->data);
	t->st = eng_malloc((size_t)s->n * sizeof *t->st);
	if (!t->data || !t->st) {
		sset_free(t);
		return NONE;
	}
	uint32_t off = 0;
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->st[i].len)
			memcpy(t->data + off, s->data + s->st[i].off, s->st[i].len * sizeof *t->data);
		t->st[i] = (struct stk){off, s->st[i].len};
		off += s->st[i].len;
	}
	t->nd = off;
	t->n = t->cap = s->n;
	t->capd = off ? off : 1;
	m->state_ht[k] = ++m->n_states;
	return m->n_states - 1;
}

static uint64_t sig_hash(uint32_t id, uint64_t mask)
{
	return (mask ^ ((uint64_t)id << 32 | id)) * 0x9e3779b97f4a7c15ull;
}

/* step() for a state of at most 64 stacks: keyed by the set of stacks
 * whose top class takes CP. */
static uint32_t step_sig(grammar *m, uint32_t id, uint32_t cp, int *rc)
{
	const struct sset *st = &m->states[id];
	uint64_t mask = 0;
	for (uint32_t i = 0; i < st->n; i++) {
		uint32_t t = top_of(st, i);
		if (t != NONE && m->g->syms[t].kind == GBNF_CLASS && gbnf_class_has(m->g, m->g->syms[t].arg, cp))
			mask |= 1ull << i;
	}
	if (!mask)
		return DEAD;
	uint32_t k = 0;
	if (m->sig_cap) {
		k = (uint32_t)(sig_hash(id, mask) >> 32) & (m->sig_cap - 1);
		for (; m->sig_id[k]; k = (k + 1) & (m->sig_cap - 1))
			if (m->sig_id[k] == id + 1 && m->sig_mask[k] == mask)
				return m->sig_val[k];
	}
	*rc = advance_cp(m, st, cp, &m->tmp[0]);
	if (*rc)
		return NONE;
	uint32_t next = intern(m, &m->tmp[0]);
	if (next == NONE)
		return NONE;
	if ((uint64_t)(m->sig_n + 1) * 2 > m->sig_cap) {
		if (m->sig_cap >= MAX_MEMO)
			return next;
		uint32_t cap = m->sig_cap ? m->sig_cap * 2 : 1024;
		uint32_t *ni = eng_calloc(cap, sizeof *ni);
		uint64_t *nm = eng_malloc(cap * sizeof *nm);
		uint32_t *nv = eng_malloc(cap * sizeof *nv);
		if (!ni || !nm || !nv) {
			free(ni);
			free(nm);
			free(nv);
			return next;
		}
		for (uint32_t i = 0; i < m->sig_cap; i++) {
			if (!m->sig_id[i])
				continue;
			uint32_t j = (uint32_t)(sig_hash(m->sig_id[i] - 1, m->sig_mask[i]) >> 32) & (cap - 1);
			while (ni[j])
				j = (j + 1) & (cap - 1);
			ni[j] = m->sig_id[i];
			nm[j] = m->sig_mask[i];
			nv[j] = m->sig_val[i];
		}
		free(m->sig_id);
		free(m->sig_mask);
		free(m->sig_val);
		m->sig_id = ni;
		m->sig_mask = nm;
		m->sig_val = nv;
		m->sig_cap = cap;
		k = (uint32_t)(sig_hash(id, mask) >> 32) & (cap - 1);
		while (m->sig_id[k])
			k = (k + 1) & (cap - 1);
	}
	m->sig_id[k] = id + 1;
	m->sig_mask[k] = mask;
	m->sig_val[k] = next;
	m->sig_n++;
	return next;
}

/* The state after character CP from state ID: memoised.  DEAD when no
 * stack takes CP; NONE when out of memory or states; a negative error
 * in *rc. */
static uint32_t step(grammar *m, uint32_t id, uint32_t cp, int *rc)
{
	if (cp < 128) {
		uint32_t a = m->ascii[(size_t)id * 128 + cp];
		if (a == NONE) {
			*rc = advance_cp(m, &m->states[id], cp, &m->tmp[0]);
			if (*rc)
				return NONE;
			/* intern() may move the table; NONE (no room) stays "not
			 * yet known" */
			a = intern(m, &m->tmp[0]);
			m->ascii[(size_t)id * 128 + cp] = a;
		}
		return a;
	}
	const struct sset *st = &m->states[id];
	if (st->n <= 64)
		return step_sig(m, id, cp, rc);
	uint64_t key = ((uint64_t)id << 21 | cp) + 1;
	uint32_t k = 0;
	if (m->memo_cap) {
		k = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (m->memo_cap - 1);
		for (; m->memo_key[k]; k = (k + 1) & (m->memo_cap - 1))
			if (m->memo_key[k] == key)
				return m->memo_val[k];
	}
	*rc = advance_cp(m, &m->states[id], cp, &m->tmp[0]);
	if (*rc)
		return NONE;
	uint32_t next = intern(m, &m->tmp[0]);
	if (next == NONE)
		return NONE;
	if ((uint64_t)(m->memo_n + 1) * 2 > m->memo_cap) {
		if (m->memo_cap >= MAX_MEMO)
			return next; /* full: answers go unremembered */
		uint32_t cap = m->memo_cap ? m->memo_cap * 2 : 4096;
		uint64_t *nk = eng_calloc(cap, sizeof *nk);
		uint32_t *nv = eng_malloc(cap * sizeof *nv);
		if (!nk || !nv) {
			free(nk);
			free(nv);
			return next;
		}
		for (uint32_t i = 0; i < m->memo_cap; i++) {
			if (!m->memo_key[i])
				continue;
			uint32_t j = (uint32_t)((m->memo_key[i] * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
			while (nk[j])
				j = (j + 1) & (cap - 1);
			nk[j] = m->memo_key[i];
			nv[j] = m->memo_val[i];
		}
		free(m->memo_key);
		free(m->memo_val);
		m->memo_key = nk;
		m->memo_val = nv;
		m->memo_cap = cap;
		k = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
		while (m->memo_key[k])
			k = (k + 1) & (cap - 1);
	}
	m->memo_key[k] = key;
	m->memo_val[k] = next;
	m->memo_n++;
	return next;
}

/* Depth-first over the trie below NODE from state ID with pending P. */
static int walk(grammar *m, uint32_t node, uint32_t id, struct partial p)
{
	const grammar_vocab *v = m->v;
	for (uint32_t c = v->node[node].child; c != NONE; c = v->node[c].sibling) {
		struct partial q = p;
		uint32_t nid = id;
		int u = utf8_step(&q, v->node[c].byte);
		if (u < 0)
			continue;
		if (u == 1) {
			int rc = 0;
			nid = step(m, id, q.v, &rc);
			if (rc)
				return rc;
			if (nid == NONE)
				return GRAMMAR_E_NOMEM;
			if (nid == DEAD)
				continue;
			q.need = 0;
		} else if (!partial_viable(m->g, &m->states[id], &q)) {
			continue;
		}
		for (uint32_t t = v->node[c].tok; t != NONE; t = v->next_tok[t])
			allow(m, t);
		if (v->node[c].child != NONE) {
			int rc = walk(m, c, nid, q);
			if (rc)
				return rc;
		}
	}
	return GRAMMAR_OK;
}

/* Applies the allowed set to LOGITS. */
static int64_t apply_mask(grammar *m, float *logits)
{
	for (uint32_t i = 0; i < m->v->n; i++)
		if (!m->allowed[i])
			logits[i] = -INFINITY;
	return m->n_allowed;
}

int64_t grammar_mask(grammar *m, float *logits)
{
	const grammar_vocab *v = m->v;
	if (!v)
		return GRAMMAR_E_RANGE;
	if (m->n_states >= MAX_STATES || m->memo_n * 2 >= MAX_MEMO || m->sig_n * 2 >= MAX_MEMO)
		automaton_reset(m);
	uint32_t id = m->cur.n ? intern(m, &m->cur) : DEAD;
	if (id == NONE) {
		automaton_reset(m);
		if ((id = intern(m, &m->cur)) == NONE)
			return GRAMMAR_E_NOMEM;
	}
	struct mask_cache *slot = NULL;
	if (id != DEAD && !m->pc.need) {
		for (int i = 0; i < MASK_CACHE; i++)
			if (m->mc[i].state == id) {
				m->mc[i].used = ++m->mc_clock;
				memcpy(m->allowed, m->mc[i].allowed, v->n);
				m->n_allowed = m->mc[i].n_allowed;
				return apply_mask(m, logits);
			}
		slot = &m->mc[0];
		for (int i = 1; i < MASK_CACHE; i++)
			if (m->mc[i].used < slot->used)
				slot = &m->mc[i];
	}
	memset(m->allowed, 0, v->n);
	m->n_allowed = 0;
	if (grammar_can_end(m))
		for (uint32_t i = 0; i < v->n_eog; i++)
			allow(m, v->eog[i]);
	if (!m->pc.need) {
		for (uint32_t i = 0; i < m->cur.n; i++) {
			uint32_t t = top_of(&m->cur, i);
			if (t == NONE)
				continue;
			const struct gbnf_sym *s = &m->g->syms[t];
			if (s->kind == GBNF_TOKEN && s->arg < v->n)
				allow(m, s->arg);
			else if (s->kind == GBNF_TOKEN_NOT)
				for (uint32_t k = 0; k < v->n; k++)
					if (k != s->arg && v->kind[k] != GRAMMAR_TOK_EOG)
						allow(m, k);
		}
	}
	if (id != DEAD) {
		int rc = walk(m, 0, id, m->pc);
		if (rc)
			return rc;
	}
	for (uint32_t i = 0; i < v->n_long; i++)
		if (!m->allowed[v->long_tok[i]] && grammar_token_ok(m, (int32_t)v->long_tok[i]))
			allow(m, v->long_tok[i]);
	/* states are ids into the automaton, which a reset renumbers: only
	 * cache while the walk did not outgrow it */
	if (slot && m->n_states < MAX_STATES && (slot->allowed || (slot->allowed = eng_malloc(v->n ? v->n : 1)))) {
		memcpy(slot->allowed, m->allowed, v->n);
		slot->n_allowed = m->n_allowed;
		slot->state = id;
		slot->used = ++m->mc_clock;
	}
	return apply_mask(m, logits);
}

/* ---- engine.h's model-free calls ---- */

static int32_t any_token(void *ctx, const char *text, size_t len)
{
	(void)ctx, (void)text, (void)len;
	return 0;
}

int engine_grammar_check(const char *text, size_t len, char *err, size_t errlen)
{
	struct gbnf *g;
	int rc = gbnf_parse(text, len, any_token, NULL, 0, &g, err, errlen);
	gbnf_free(g);
	return rc == GBNF_OK ? 0 : rc == GBNF_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
}

int engine_grammar_match(const char *text, size_t len, const char *s, size_t n, char *err, size_t errlen)
{
	struct gbnf *g;
	int rc = gbnf_parse(text, len, any_token, NULL, 0, &g, err, errlen);
	if (rc)
		return rc == GBNF_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
	for (uint32_t i = 0; i < g->n_syms; i++)
		if (g->syms[i].kind == GBNF_TOKEN || g->syms[i].kind == GBNF_TOKEN_NOT) {
			snprintf(err, errlen, "the grammar names tokens: text alone cannot be checked against it");
			gbnf_free(g);
			return ENGINE_E_INVAL;
		}
	grammar *m = grammar_new(g, NULL, &rc);
	if (!m) {
		gbnf_free(g);
		snprintf(err, errlen, "%s", rc == GRAMMAR_E_NOMEM ? "out of memory" : "the grammar is too ambiguous");
		return rc == GRAMMAR_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
	}
	/* byte by byte, to say where the text stops matching */
	size_t i = 0;
	rc = GRAMMAR_OK;
	for (; i < n && rc == GRAMMAR_OK; i++)
		rc = grammar_accept_text(m, s + i, 1);
	int ans;
	if (rc == GRAMMAR_E_NOMEM) {
		snprintf(err, errlen, "out of memory");
		ans = ENGINE_E_NOMEM;
	} else if (rc) {
		snprintf(err, errlen, "%s at byte %zu", rc == GRAMMAR_E_LIMIT ? "the parse grew past its limits" : "no match",
			 i - 1);
		ans = 0;
	} else if (!grammar_can_end(m)) {
		snprintf(err, errlen, "the text ends before the grammar is complete");
		ans = 0;
	} else {
		ans = 1;
	}
	grammar_free(m);
	gbnf_free(g);
	return ans;
}
