/*
 * test_session.c - the precedence of settings (src/session.h), case by
 * case: for every setting, each source that can set it is tried alone and
 * then under every stronger source, and the value and its recorded source
 * are checked.  Also settings.json read from a temporary XDG_CONFIG_HOME
 * (its keys, and one line naming the file and key when it is bad), and the
 * cases where the front ends used to disagree:
 *   - a models.d device/gpu_layers and the context cap apply to every front
 *     end (serve ignored them);
 *   - a remote entry's context is the server's, not capped at 4096 (one-shot
 *     capped it, the full-screen chat did not);
 *   - --kv-type f16 on the command line beats a models.d q8_0 (the TUI could
 *     only turn q8_0 on);
 *   - --raw keeps a conversation's own system prompt but no configured one.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "chats.h"
#include "session.h"
#include "testutil.h"

static void entry_blank(struct model_entry *e)
{
	memset(e, 0, sizeof *e);
	e->temperature = e->top_p = e->min_p = e->repeat_penalty = -1;
	e->top_k = -1;
	e->kv_type = e->cache_k = e->cache_v = e->kv_rotation = -1;
	e->device = -1;
	e->gpu_layers = -2;
	snprintf(e->name, sizeof e->name, "m");
}

static bool near(float a, float b)
{
	return fabsf(a - b) < 1e-6f;
}

/* The sources of one test case; each pointer NULL when absent. */
struct srcs {
	struct session_flags f;
	struct chats_settings held;
	bool have_held;
	struct model_entry me;
	bool have_me;
	struct config_settings prefs;
	bool have_prefs;
	struct session_file file;
	bool have_file;
};

static void srcs_init(struct srcs *s)
{
	memset(s, 0, sizeof *s);
	session_flags_init(&s->f);
	chats_settings_init(&s->held);
	entry_blank(&s->me);
	entry_blank(&s->prefs.d);
	session_file_init(&s->file);
}

static void resolve(struct srcs *s, struct session_config *c)
{
	int rc = session_resolve(&s->f, s->have_held ? &s->held : NULL, s->have_me ? &s->me : NULL,
				 s->have_prefs ? &s->prefs : NULL, s->have_file ? &s->file : NULL, c);
	CHECK(rc == 0, "session_resolve: %d", rc);
}

/* Sets sampling field K to V in source LEVEL (0 flag .. 3 settings.json,
 * 4 the model file). */
static void set_sampling(struct srcs *s, int level, int k, float v)
{
	static const unsigned bit[] = {SESSION_SET_TEMP, SESSION_SET_TOPK, SESSION_SET_TOPP, SESSION_SET_MINP,
				       SESSION_SET_REP};
	float *fp[5][5] = {
		{&s->f.sampling.temperature, NULL, &s->f.sampling.top_p, &s->f.sampling.min_p,
		 &s->f.sampling.repeat_penalty},
		{&s->held.temperature, NULL, &s->held.top_p, &s->held.min_p, &s->held.repeat_penalty},
		{&s->me.temperature, NULL, &s->me.top_p, &s->me.min_p, &s->me.repeat_penalty},
		{&s->prefs.d.temperature, NULL, &s->prefs.d.top_p, &s->prefs.d.min_p, &s->prefs.d.repeat_penalty},
		{&s->file.temperature, NULL, &s->file.top_p, &s->file.min_p, &s->file.repeat_penalty},
	};
	int *ip[5] = {NULL, &s->held.top_k, &s->me.top_k, &s->prefs.d.top_k, &s->file.top_k};
	if (k == 1) {
		if (level == 0)
			s->f.sampling.top_k = (int32_t)v;
		else
			*ip[level] = (int)v;
	} else {
		*fp[level][k] = v;
	}
	if (level == 0)
		s->f.set |= bit[k];
	s->have_held |= level == 1;
	s->have_me |= level == 2;
	s->have_prefs |= level == 3;
	s->have_file |= level == 4;
}

static float get_sampling(const struct session_config *c, int k)
{
	switch (k) {
	case 0: return c->sampling.temperature;
	case 1: return (float)c->sampling.top_k;
	case 2: return c->sampling.top_p;
	case 3: return c->sampling.min_p;
	default: return c->sampling.repeat_penalty;
	}
}

/* Every sampling field: each source alone, then every source set with a
 * value of its own: the strongest wins. */
static void test_sampling(void)
{
	static const enum session_source src[5] = {SESSION_FLAG, SESSION_CONV, SESSION_ENTRY, SESSION_SETTINGS,
						   SESSION_FILE};
	static const char *const name[5] = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty"};
	struct engine_sampling d;
	engine_sampling_default(&d);
	for (int k = 0; k < 5; k++) {
		/* no source: the engine's default */
		struct srcs s;
		struct session_config c;
		srcs_init(&s);
		resolve(&s, &c);
		float dv = k == 0 ? d.temperature : k == 1 ? (float)d.top_k : k == 2 ? d.top_p : k == 3 ? d.min_p
													    : d.repeat_penalty;
		CHECK(near(get_sampling(&c, k), dv) && c.from[k] == SESSION_DEFAULT, "%s default", name[k]);
		session_config_free(&c);
		for (int weakest = 0; weakest < 5; weakest++) {
			/* sources weakest..0 set, each with its own value: level
			 * L sets 0.1 * (L + 1) (top_k: 10 * (L + 1)) */
			srcs_init(&s);
			for (int l = weakest; l >= 0; l--)
				set_sampling(&s, l, k, k == 1 ? 10.0f * (float)(l + 1) : 0.1f * (float)(l + 1));
			resolve(&s, &c);
			float want = k == 1 ? 10.0f : 0.1f;
			CHECK(near(get_sampling(&c, k), want) && c.from[k] == SESSION_FLAG,
			      "%s: the flag beats the %d weaker sources (%g from %s)", name[k], weakest,
			      (double)get_sampling(&c, k), session_source_name(c.from[k]));
			session_config_free(&c);
			/* the source alone */
			srcs_init(&s);
			set_sampling(&s, weakest, k, k == 1 ? 7.0f : 0.5f);
			resolve(&s, &c);
			CHECK(near(get_sampling(&c, k), k == 1 ? 7.0f : 0.5f) && c.from[k] == src[weakest],
			      "%s from %s alone (got %s)", name[k], session_source_name(src[weakest]),
			      session_source_name(c.from[k]));
			/* the other fields stay at the default */
			for (int o = 0; o < 5; o++)
				if (o != k)
					CHECK(c.from[o] == SESSION_DEFAULT, "%s set alone leaves %s alone", name[k],
					      name[o]);
			session_config_free(&c);
		}
	}
	/* a conversation with nothing recorded leaves the entry's */
	struct srcs s;
	struct session_config c;
	srcs_init(&s);
	s.have_held = true;
	s.have_me = true;
	s.me.temperature = 0.3f;
	resolve(&s, &c);
	CHECK(near(c.sampling.temperature, 0.3f) && c.from[SESSION_F_TEMP] == SESSION_ENTRY,
	      "an unset conversation temperature leaves the entry's");
	session_config_free(&c);
	/* the seed and the penalties only the flags give travel through */
	srcs_init(&s);
	s.f.sampling.seed = 1234;
	s.f.sampling.presence_penalty = 0.5f;
	resolve(&s, &c);
	CHECK(c.sampling.seed == 1234 && near(c.sampling.presence_penalty, 0.5f), "seed and presence penalty");
	session_config_free(&c);
}

/* kv_type, device, gpu_layers, threads: flag > models.d > settings.json >
 * default; a conversation does not carry them. */
static void test_load_ints(void)
{
	struct srcs s;
	struct session_config c;
	srcs_init(&s);
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_F16 && c.from[SESSION_F_KV] == SESSION_DEFAULT, "kv default f16");
	CHECK(c.load.device == ENGINE_DEVICE_AUTO && c.from[SESSION_F_DEVICE] == SESSION_DEFAULT, "device auto");
	CHECK(c.load.gpu_layers == ENGINE_GPU_LAYERS_AUTO && c.from[SESSION_F_GPU_LAYERS] == SESSION_DEFAULT,
	      "gpu_layers auto");
	CHECK(c.n_threads == 0 && c.from[SESSION_F_THREADS] == SESSION_DEFAULT, "threads: all cores");
	session_config_free(&c);

	for (int weakest = 0; weakest < 3; weakest++) {
		srcs_init(&s);
		s.have_me = s.have_prefs = true;
		s.have_held = true; /* present but silent on these */
		if (weakest >= 2)
			s.prefs.d.kv_type = ENGINE_KV_Q8_0, s.prefs.d.device = ENGINE_DEVICE_CUDA,
			s.prefs.d.gpu_layers = 3, s.prefs.d.threads = 3;
		if (weakest >= 1)
			s.me.kv_type = ENGINE_KV_Q8_0, s.me.device = ENGINE_DEVICE_CPU, s.me.gpu_layers = 0,
			s.me.threads = 2;
		s.f.kv_type = ENGINE_KV_F16, s.f.device = ENGINE_DEVICE_AUTO, s.f.gpu_layers = 5, s.f.n_threads = 1;
		resolve(&s, &c);
		CHECK(c.load.kv_type == ENGINE_KV_F16 && c.from[SESSION_F_KV] == SESSION_FLAG,
		      "--kv-type f16 beats %d weaker q8_0 sources", weakest);
		CHECK(c.load.device == ENGINE_DEVICE_AUTO && c.from[SESSION_F_DEVICE] == SESSION_FLAG, "device flag");
		CHECK(c.load.gpu_layers == 5 && c.from[SESSION_F_GPU_LAYERS] == SESSION_FLAG, "gpu_layers flag");
		CHECK(c.n_threads == 1 && c.from[SESSION_F_THREADS] == SESSION_FLAG, "threads flag");
		session_config_free(&c);
	}
	/* models.d beats settings.json; settings.json alone */
	srcs_init(&s);
	s.have_me = s.have_prefs = true;
	s.me.kv_type = ENGINE_KV_F16, s.me.device = ENGINE_DEVICE_CPU, s.me.gpu_layers = 0, s.me.threads = 2;
	s.prefs.d.kv_type = ENGINE_KV_Q8_0, s.prefs.d.device = ENGINE_DEVICE_CUDA, s.prefs.d.gpu_layers = 3,
	s.prefs.d.threads = 3;
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_F16 && c.from[SESSION_F_KV] == SESSION_ENTRY, "kv: models.d");
	CHECK(c.load.device == ENGINE_DEVICE_CPU && c.from[SESSION_F_DEVICE] == SESSION_ENTRY,
	      "device: models.d (serve ignored it)");
	CHECK(c.load.gpu_layers == ENGINE_GPU_LAYERS_NONE && c.from[SESSION_F_GPU_LAYERS] == SESSION_ENTRY,
	      "gpu_layers 0 in models.d = none (serve ignored it)");
	CHECK(c.n_threads == 2 && c.from[SESSION_F_THREADS] == SESSION_ENTRY, "threads: models.d");
	session_config_free(&c);
	s.have_me = false;
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_Q8_0 && c.from[SESSION_F_KV] == SESSION_SETTINGS, "kv: settings.json");
	CHECK(c.load.device == ENGINE_DEVICE_CUDA && c.from[SESSION_F_DEVICE] == SESSION_SETTINGS,
	      "device: settings.json");
	CHECK(c.load.gpu_layers == 3 && c.from[SESSION_F_GPU_LAYERS] == SESSION_SETTINGS, "gpu_layers: settings");
	CHECK(c.n_threads == 3 && c.from[SESSION_F_THREADS] == SESSION_SETTINGS, "threads: settings.json");
	session_config_free(&c);
	/* K and V apart: within a source cache_type_k/_v beat kv_type; a
	 * stronger source's kv_type beats a weaker one's cache_type_v */
	srcs_init(&s);
	s.have_me = s.have_prefs = true;
	s.me.kv_type = ENGINE_KV_Q4_0, s.me.cache_v = ENGINE_KV_Q3R;
	s.prefs.d.cache_k = ENGINE_KV_Q8_0, s.prefs.d.kv_rotation = 0;
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_Q4_0 && c.load.kv_type_v == ENGINE_KV_Q3R + 1 &&
	      c.from[SESSION_F_KV] == SESSION_ENTRY && c.load.kv_no_rotate,
	      "models.d K q4_0, V q3r, settings' rotation off (%d %d %d)", c.load.kv_type, c.load.kv_type_v,
	      c.load.kv_no_rotate);
	session_config_free(&c);
	s.f.kv_type = ENGINE_KV_Q5_1, s.f.kv_rotation = 1;
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_Q5_1 && c.load.kv_type_v == ENGINE_KV_Q5_1 + 1 && !c.load.kv_no_rotate &&
	      c.from[SESSION_F_KV] == SESSION_FLAG, "--kv-type q5_1 --kv-rotation on beat the entry");
	session_config_free(&c);
	s.f.cache_v = ENGINE_KV_F16;
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_Q5_1 && c.load.kv_type_v == ENGINE_KV_F16 + 1,
	      "--cache-type-v f16 beats --kv-type for V only");
	session_config_free(&c);
	srcs_init(&s);
	resolve(&s, &c);
	CHECK(c.load.kv_type == ENGINE_KV_F16 && c.load.kv_type_v == ENGINE_KV_F16 + 1 && !c.load.kv_no_rotate,
	      "defaults: f16 K and V, rotation on");
	session_config_free(&c);
	/* --gpu-layers -1 is auto */
	srcs_init(&s);
	s.f.gpu_layers = -1;
	resolve(&s, &c);
	CHECK(c.load.gpu_layers == ENGINE_GPU_LAYERS_AUTO && c.from[SESSION_F_GPU_LAYERS] == SESSION_FLAG,
	      "--gpu-layers -1: auto");
	session_config_free(&c);
}

static void test_context(void)
{
	struct srcs s;
	struct session_config c;
	srcs_init(&s);
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 0 && c.from[SESSION_F_CTX] == SESSION_DEFAULT, "context: the engine's");
	session_config_free(&c);

	/* a local entry's context_size is capped at 4096 (every front end;
	 * serve did not cap it) */
	srcs_init(&s);
	s.have_me = true;
	s.me.context_size = 8192;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 4096 && c.from[SESSION_F_CTX] == SESSION_ENTRY, "entry 8192 capped: %u",
	      c.load.n_ctx);
	session_config_free(&c);
	s.me.context_size = 2048;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 2048, "entry 2048: %u", c.load.n_ctx);
	session_config_free(&c);
	/* settings.json's context_size moves the cap, and stands alone */
	s.me.context_size = 32768;
	s.have_prefs = true;
	s.prefs.d.context_size = 16384;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 16384 && c.from[SESSION_F_CTX] == SESSION_ENTRY, "settings.json raises the cap: %u",
	      c.load.n_ctx);
	session_config_free(&c);
	s.me.context_size = 8192;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 8192, "entry below settings.json's: %u", c.load.n_ctx);
	session_config_free(&c);
	s.have_me = false;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 16384 && c.from[SESSION_F_CTX] == SESSION_SETTINGS, "settings.json alone: %u",
	      c.load.n_ctx);
	session_config_free(&c);
	/* a remote entry's context is the server's: not capped (one-shot
	 * capped it at 4096, the full-screen chat did not) */
	srcs_init(&s);
	s.have_me = true;
	s.me.remote = true;
	s.me.context_size = 32768;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 32768 && c.from[SESSION_F_CTX] == SESSION_ENTRY, "remote entry uncapped: %u",
	      c.load.n_ctx);
	session_config_free(&c);
	/* the conversation's beats the entry's; the flag beats both */
	s.have_held = true;
	s.held.context_size = 1024;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 1024 && c.from[SESSION_F_CTX] == SESSION_CONV, "conversation context: %u",
	      c.load.n_ctx);
	session_config_free(&c);
	s.held.context_size = 8; /* out of range: not a recorded context */
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 32768 && c.from[SESSION_F_CTX] == SESSION_ENTRY, "bad conversation context ignored");
	session_config_free(&c);
	s.f.n_ctx = 512;
	s.held.context_size = 1024;
	resolve(&s, &c);
	CHECK(c.load.n_ctx == 512 && c.from[SESSION_F_CTX] == SESSION_FLAG, "-c beats all: %u", c.load.n_ctx);
	session_config_free(&c);

	/* the picker's figure: the same rule, the engine's default explicit */
	srcs_init(&s);
	CHECK(session_context(&s.f, NULL, NULL, 2048) == 2048 && session_context(&s.f, NULL, NULL, 32768) == 4096 &&
		      session_context(&s.f, NULL, NULL, 0) == 4096,
	      "picker: a bare file loads with min(training context, 4096)");
	s.me.context_size = 8192;
	CHECK(session_context(&s.f, &s.me, NULL, 2048) == 4096, "picker: entry capped");
	s.me.remote = true;
	CHECK(session_context(&s.f, &s.me, NULL, 0) == 8192, "picker: remote entry as it is");
	s.me.context_size = 0;
	CHECK(session_context(&s.f, &s.me, NULL, 0) == 0, "picker: remote without one: the server's");
	s.prefs.d.context_size = 1024;
	s.me.remote = false;
	CHECK(session_context(&s.f, NULL, &s.prefs, 2048) == 1024, "picker: settings.json's");
	s.f.n_ctx = 300;
	CHECK(session_context(&s.f, &s.me, &s.prefs, 2048) == 300, "picker: -c");
}

static void test_system(void)
{
	struct srcs s;
	struct session_config c;
	char entry_sys[] = "entry system", pref_sys[] = "settings system";
	srcs_init(&s);
	resolve(&s, &c);
	CHECK(!c.system && c.from[SESSION_F_SYSTEM] == SESSION_DEFAULT, "no system prompt");
	session_config_free(&c);

	s.have_prefs = true;
	s.prefs.d.system_prompt = pref_sys;
	resolve(&s, &c);
	CHECK(c.system && strcmp(c.system, pref_sys) == 0 && c.from[SESSION_F_SYSTEM] == SESSION_SETTINGS,
	      "settings.json system prompt");
	session_config_free(&c);
	s.have_me = true;
	s.me.system_prompt = entry_sys;
	resolve(&s, &c);
	CHECK(c.system && strcmp(c.system, entry_sys) == 0 && c.from[SESSION_F_SYSTEM] == SESSION_ENTRY,
	      "models.d system prompt beats settings.json");
	session_config_free(&c);
	/* --raw: neither configured one */
	s.f.raw = true;
	resolve(&s, &c);
	CHECK(!c.system && c.from[SESSION_F_SYSTEM] == SESSION_DEFAULT, "--raw: no configured system prompt");
	session_config_free(&c);
	/* a conversation's own, even under --raw, and even when it had none */
	s.have_held = true;
	s.held.system_prompt = "held system";
	resolve(&s, &c);
	CHECK(c.system && strcmp(c.system, "held system") == 0 && c.from[SESSION_F_SYSTEM] == SESSION_CONV,
	      "--raw keeps the conversation's system prompt");
	session_config_free(&c);
	s.f.raw = false;
	s.held.system_prompt = NULL;
	resolve(&s, &c);
	CHECK(!c.system && c.from[SESSION_F_SYSTEM] == SESSION_CONV,
	      "a conversation held without a system prompt stays without");
	session_config_free(&c);
	/* --system beats all; --system "" is none on purpose */
	s.f.system = "flag system";
	resolve(&s, &c);
	CHECK(c.system && strcmp(c.system, "flag system") == 0 && c.from[SESSION_F_SYSTEM] == SESSION_FLAG,
	      "--system beats all");
	session_config_free(&c);
	s.f.system = "";
	resolve(&s, &c);
	CHECK(!c.system && c.from[SESSION_F_SYSTEM] == SESSION_FLAG, "--system \"\": none");
	session_config_free(&c);
	/* the models.d template travels, copied */
	srcs_init(&s);
	s.have_me = true;
	char tmpl[] = "{{ messages }}";
	s.me.template_text = tmpl;
	resolve(&s, &c);
	CHECK(c.load.template_override && strcmp(c.load.template_override, tmpl) == 0 &&
		      c.load.template_override != tmpl,
	      "template override copied");
	session_config_free(&c);
}

static void test_pick_model(void)
{
	struct session_flags f;
	session_flags_init(&f);
	struct chats_settings held;
	chats_settings_init(&held);
	struct config_settings prefs;
	memset(&prefs, 0, sizeof prefs);
	char spec[256];
	enum session_source from;
	CHECK(session_pick_model(&f, NULL, NULL, NULL, spec, sizeof spec, &from) == 0 &&
		      strcmp(spec, config_default_model()) == 0 && from == SESSION_DEFAULT,
	      "default model: %s", spec);
	snprintf(prefs.model, sizeof prefs.model, "fromsettings");
	session_pick_model(&f, &held, "", &prefs, spec, sizeof spec, &from);
	CHECK(strcmp(spec, "fromsettings") == 0 && from == SESSION_SETTINGS, "settings.json model: %s", spec);
	session_pick_model(&f, &held, "lastused", &prefs, spec, sizeof spec, &from);
	CHECK(strcmp(spec, "lastused") == 0, "the model used last beats settings.json: %s", spec);
	held.model = "heldmodel";
	session_pick_model(&f, &held, "lastused", &prefs, spec, sizeof spec, &from);
	CHECK(strcmp(spec, "heldmodel") == 0 && from == SESSION_CONV, "the conversation's model: %s", spec);
	f.model = "flagmodel";
	session_pick_model(&f, &held, "lastused", &prefs, spec, sizeof spec, &from);
	CHECK(strcmp(spec, "flagmodel") == 0 && from == SESSION_FLAG, "-m beats all: %s", spec);
	char tiny[4];
	CHECK(session_pick_model(&f, NULL, NULL, NULL, tiny, sizeof tiny, NULL) == -1, "a spec too long is refused");
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* A GGUF header with no tensors: general.architecture and the keys given
 * (F32 type 6, I32 type 5, U32 type 4). */
struct kv {
	const char *key;
	uint32_t type;
	double v;
};

static void put(FILE *f, const void *p, size_t n)
{
	fwrite(p, 1, n, f);
}

static int write_gguf(const char *path, const struct kv *kv, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	uint32_t ver = 3;
	uint64_t nt = 0, nkv = n + 1, len;
	put(f, "GGUF", 4);
	put(f, &ver, 4);
	put(f, &nt, 8);
	put(f, &nkv, 8);
	const char *ak = "general.architecture", *av = "llama";
	uint32_t str = 8;
	len = strlen(ak);
	put(f, &len, 8);
	put(f, ak, len);
	put(f, &str, 4);
	len = strlen(av);
	put(f, &len, 8);
	put(f, av, len);
	for (size_t i = 0; i < n; i++) {
		len = strlen(kv[i].key);
		put(f, &len, 8);
		put(f, kv[i].key, len);
		put(f, &kv[i].type, 4);
		if (kv[i].type == 6) {
			float x = (float)kv[i].v;
			put(f, &x, 4);
		} else {
			int32_t x = (int32_t)kv[i].v;
			put(f, &x, 4);
		}
	}
	return fclose(f);
}

/* settings.json through config_settings_read(), then into the resolver. */
static void test_settings_file(void)
{
	char tmpl[] = "/tmp/ttychat-session-XXXXXX";
	char *dir = mkdtemp(tmpl);
	CHECK(dir != NULL, "mkdtemp");
	if (!dir)
		return;
	setenv("XDG_CONFIG_HOME", dir, 1);
	char sub[512], path[600], err[1024];
	snprintf(sub, sizeof sub, "%s/ttychat", dir);
	mkdir(sub, 0700);
	snprintf(path, sizeof path, "%s/settings.json", sub);

	struct config_settings p;
	CHECK(config_settings_read(&p, err, sizeof err) == 0 && !p.model[0] && p.d.context_size == 0,
	      "no settings.json: empty settings");
	config_settings_free(&p);

	write_file(path, "{\"model\": \"gemma3-270m\", \"theme\": \"mono\", \"context_size\": 2048,"
			 " \"sampling\": {\"temperature\": 0.2, \"top_k\": 12}, \"kv_type\": \"q8_0\","
			 " \"device\": \"cpu\", \"gpu_layers\": 0, \"threads\": 1, \"system_prompt\": \"be terse\","
			 " \"colour\": 1}");
	int rc = config_settings_read(&p, err, sizeof err);
	CHECK(rc == 0, "settings.json read: %s", rc ? err : "");
	if (rc == 0) {
		CHECK(strcmp(p.model, "gemma3-270m") == 0 && strcmp(p.theme, "mono") == 0, "model and theme");
		CHECK(strstr(p.d.warnings, "colour") != NULL && strstr(p.d.warnings, path) != NULL,
		      "an unknown key is a warning naming the file: %s", p.d.warnings);
		struct session_flags f;
		session_flags_init(&f);
		struct session_config c;
		CHECK(session_resolve(&f, NULL, NULL, &p, NULL, &c) == 0, "resolve");
		CHECK(c.load.n_ctx == 2048 && near(c.sampling.temperature, 0.2f) && c.sampling.top_k == 12 &&
			      c.load.kv_type == ENGINE_KV_Q8_0 && c.load.device == ENGINE_DEVICE_CPU &&
			      c.load.gpu_layers == ENGINE_GPU_LAYERS_NONE && c.n_threads == 1 && c.system &&
			      strcmp(c.system, "be terse") == 0,
		      "settings.json's defaults reach the decision");
		session_config_free(&c);
		char buf[128];
		session_pick_model(&f, NULL, NULL, &p, buf, sizeof buf, NULL);
		CHECK(strcmp(buf, "gemma3-270m") == 0, "settings.json's model picked: %s", buf);
		config_settings_free(&p);
	}
	/* bad values: one line naming the file and the key */
	static const struct {
		const char *text, *key;
	} bad[] = {
		{"{\"context_size\": 3}", "context_size"},
		{"{\"sampling\": {\"top_p\": 7}}", "sampling.top_p"},
		{"{\"kv_type\": \"q4\"}", "kv_type"},
		{"{\"device\": \"tpu\"}", "device"},
		{"{\"model\": 5}", "model"},
		{"{\"threads\": 2, \"threads\": 3}", "threads"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_file(path, bad[i].text);
		err[0] = '\0';
		rc = config_settings_read(&p, err, sizeof err);
		char want[64];
		snprintf(want, sizeof want, "key '%s'", bad[i].key);
		CHECK(rc == -1 && strstr(err, path) && strstr(err, want) && !strchr(err, '\n'),
		      "bad settings.json %s: %s", bad[i].text, err);
	}
	write_file(path, "{\"model\": ");
	rc = config_settings_read(&p, err, sizeof err);
	CHECK(rc == -1 && strstr(err, path) && strstr(err, "not valid JSON"), "broken JSON: %s", err);
	char buf[128];
	struct session_flags nf;
	session_flags_init(&nf);
	session_pick_model(&nf, NULL, NULL, &p, buf, sizeof buf, NULL);
	CHECK(strcmp(buf, config_default_model()) == 0, "a broken settings.json leaves the default model");

	/* the whole decision of the command-line front ends */
	struct session_flags f;
	session_flags_init(&f);
	struct session_decision d;
	f.model = "/nonexistent/model.gguf";
	CHECK(session_decide(&f, NULL, &d, err, sizeof err) == SESSION_E_SETTINGS && strstr(err, path),
	      "session_decide: a bad settings.json first (%s)", err);
	session_decision_free(&d);
	write_file(path, "{\"sampling\": {\"top_k\": 9}}");
	CHECK(session_decide(&f, NULL, &d, err, sizeof err) == SESSION_E_MODEL && !d.have_me &&
		      strstr(err, "/nonexistent/model.gguf"),
	      "session_decide: a model that is not there (%s)", err);
	session_decision_free(&d);
	char model[] = "/tmp/ttychat-decide-XXXXXX.gguf";
	int fd = mkstemps(model, 5);
	close(fd);
	const struct kv adv[] = {{"general.sampling.temp", 6, 0.25}, {"general.sampling.top_k", 5, 3}};
	write_gguf(model, adv, 2);
	f.model = model;
	int st = session_decide(&f, NULL, &d, err, sizeof err);
	CHECK(st == SESSION_DECIDED && d.have_me && strcmp(d.spec, model) == 0 &&
		      near(d.cfg.sampling.temperature, 0.25f) && d.cfg.from[SESSION_F_TEMP] == SESSION_FILE &&
		      d.cfg.sampling.top_k == 9 && d.cfg.from[SESSION_F_TOPK] == SESSION_SETTINGS,
	      "session_decide: settings.json over the file's advice (%d %s)", st, st ? err : "");
	session_decision_free(&d);
	unlink(model);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

/* The model file's advice: read from its header, under settings.json. */
static void test_file_advice(void)
{
	char path[] = "/tmp/ttychat-advice-XXXXXX.gguf";
	int fd = mkstemps(path, 5);
	CHECK(fd >= 0, "mkstemps");
	if (fd < 0)
		return;
	close(fd);
	const struct kv kv[] = {
		{"general.sampling.temp", 6, 0.6},         {"general.sampling.top_k", 5, 20},
		{"general.sampling.top_p", 6, 0.95},       {"general.sampling.min_p", 6, 0.0},
		{"general.sampling.penalty_repeat", 6, 1.1}, {"general.sampling.penalty_last_n", 5, 128},
	};
	struct session_file fl;
	CHECK(write_gguf(path, kv, 6) == 0, "write %s", path);
	int n = session_file_read(path, &fl);
	CHECK(n == 6 && near(fl.temperature, 0.6f) && fl.top_k == 20 && near(fl.top_p, 0.95f) && near(fl.min_p, 0) &&
		      near(fl.repeat_penalty, 1.1f) && fl.penalty_last_n == 128,
	      "general.sampling.* read (%d keys)", n);
	/* out of range, or of another type: left out */
	const struct kv bad[] = {{"general.sampling.temp", 6, -3}, {"general.sampling.top_p", 6, 7},
				 {"general.sampling.top_k", 5, -1}};
	write_gguf(path, bad, 3);
	n = session_file_read(path, &fl);
	CHECK(n == 0 && fl.temperature < 0 && fl.top_p < 0 && fl.top_k < 0, "bad advice left out (%d)", n);
	CHECK(session_file_read("/nonexistent/x.gguf", &fl) == 0 && fl.temperature < 0, "no file: no advice");
	CHECK(session_file_read("remote:{\"base_url\": \"http://h/v1\"}", &fl) == 0, "remote: no advice");

	/* the file's advice under settings.json and the entry, over the
	 * default; the penalty window comes from the file only */
	struct srcs s;
	struct session_config c;
	srcs_init(&s);
	s.have_file = true;
	s.file.temperature = 0.6f;
	s.file.top_k = 20;
	s.file.penalty_last_n = 128;
	resolve(&s, &c);
	CHECK(near(c.sampling.temperature, 0.6f) && c.from[SESSION_F_TEMP] == SESSION_FILE && c.sampling.top_k == 20 &&
		      c.sampling.penalty_last_n == 128,
	      "the file's advice over the defaults");
	char names[64];
	session_fields_str(session_fields_of(&c, SESSION_FILE), names, sizeof names);
	CHECK(strcmp(names, "temp, top-k") == 0, "fields from the file: '%s'", names);
	session_config_free(&c);
	s.have_prefs = true;
	s.prefs.d.temperature = 0.3f;
	resolve(&s, &c);
	CHECK(near(c.sampling.temperature, 0.3f) && c.from[SESSION_F_TEMP] == SESSION_SETTINGS &&
		      c.from[SESSION_F_TOPK] == SESSION_FILE,
	      "settings.json's temperature beats the file's; its top-k stays");
	session_fields_str(session_fields_of(&c, SESSION_FILE), names, sizeof names);
	CHECK(strcmp(names, "top-k") == 0, "fields from the file: '%s'", names);
	session_config_free(&c);
	unlink(path);
}

int main(void)
{
	test_sampling();
	test_load_ints();
	test_context();
	test_system();
	test_pick_model();
	test_settings_file();
	test_file_advice();
	return tu_finish();
}
