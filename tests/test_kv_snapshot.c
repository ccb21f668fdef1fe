/*
 * test_kv_snapshot.c - KV caches that survive a restart.
 *
 * A ~2,000-token conversation is prefilled in one engine, its cache exported
 * and filed encrypted through kvstore/history blobs; a second engine and a
 * second history handle (a restart) restore it and answer the next turn
 * reusing the whole prefix.  Its time to first token is compared with a
 * third engine that re-prefills.  Also: the same reply either way, a
 * snapshot refused by another model, a damaged snapshot ignored, no
 * plaintext token ids on disk, the size budget evicting old snapshots,
 * and every snapshot of one conversation removed with it.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "history.h"
#include "kvstore.h"
#include "testutil.h"

static int no_pass(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	(void)ctx;
	(void)why;
	if (cap)
		buf[0] = '\0';
	return 0;
}

static struct history *open_store(const char *dir)
{
	struct history_opts o = {.dir = dir, .flags = HISTORY_OPEN_CREATE, .passphrase = no_pass};
	struct history *h = NULL;
	char err[256];
	int rc = history_open(&o, &h, err, sizeof err);
	CHECK(rc == 0, "history_open: %s", err);
	return h;
}

/* Runs events until request REQ ends; returns the DONE/ERROR/IMPORT/EXPORT
 * event (blob ownership passes to the caller). */
static struct engine_event wait_req(engine *e, int req, char **text)
{
	struct engine_event ev;
	size_t len = 0;
	if (text) {
		*text = calloc(1, 1);
	}
	while (engine_event_wait(e, &ev, 120000)) {
		if (ev.request == req) {
			if (ev.type == ENGINE_EV_TOKEN && text) {
				*text = realloc(*text, len + ev.text_len + 1);
				memcpy(*text + len, ev.text, ev.text_len);
				len += ev.text_len;
				(*text)[len] = '\0';
			} else if (ev.type == ENGINE_EV_DONE || ev.type == ENGINE_EV_ERROR ||
				   ev.type == ENGINE_EV_CONV_EXPORT || ev.type == ENGINE_EV_CONV_IMPORT ||
				   ev.type == ENGINE_EV_LOADED) {
				return ev;
			}
		}
		engine_event_clear(&ev);
	}
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_ERROR;
	snprintf(ev.message, sizeof ev.message, "timeout");
	return ev;
}

static engine *start(const char *model, char *model_id)
{
	char err[256];
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	struct engine_load_opts lo = {.n_ctx = 4096};
	struct engine_event ev = wait_req(e, engine_load(e, model, &lo), NULL);
	CHECK(ev.type == ENGINE_EV_LOADED, "load %s: %s", model, ev.message);
	if (model_id)
		snprintf(model_id, 33, "%s", ev.info.model_id);
	return e;
}

static int file_contains(const char *path, const void *needle, size_t n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	static unsigned char buf[1 << 20];
	size_t got, keep = 0;
	int found = 0;
	while (!found && (got = fread(buf + keep, 1, sizeof buf - keep, f)) > 0) {
		size_t have = keep + got;
		for (size_t i = 0; i + n <= have; i++)
			if (memcmp(buf + i, needle, n) == 0) {
				found = 1;
				break;
			}
		keep = n - 1 < have ? n - 1 : have;
		memmove(buf, buf + have - keep, keep);
	}
	fclose(f);
	return found;
}

/* The snapshot files under KVDIR (kv/<conversation>/<model>.kv) into OUT,
 * at most MAX; checks that each folder is 0700. */
static int list_snaps(const char *kvdir, char (*out)[4400], int max)
{
	int n = 0;
	DIR *d = opendir(kvdir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char sub[4400];
		struct stat st;
		snprintf(sub, sizeof sub, "%s/%s", kvdir, de->d_name);
		if (stat(sub, &st) != 0)
			continue;
		CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "%s: a conversation's folder, 0700 (%o)",
		      de->d_name, st.st_mode & 0777);
		DIR *sd = opendir(sub);
		struct dirent *se;
		while (sd && (se = readdir(sd))) {
			if (se->d_name[0] == '.')
				continue;
			if (n < max)
				snprintf(out[n], sizeof out[n], "%.2000s/%.2000s", sub, se->d_name);
			n++;
		}
		if (sd)
			closedir(sd);
	}
	if (d)
		closedir(d);
	return n;
}

int main(void)
{
	char smol[4096], gemma[4096];
	if (!tu_model(SMOLLM2_FILE, smol, sizeof smol))
		tu_skip("SmolLM2 model not found (run scripts/fetch-models)");
	char dir[] = "/tmp/ttychat-kvsnap-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");

	/* a conversation of about 2,000 tokens (300 under ASan, which is ~10x
	 * slower) */
#if defined(__SANITIZE_ADDRESS__)
	const int items = 2;
	const uint32_t want = 250;
#else
	const int items = 12;
	const uint32_t want = 1800;
#endif
	static char turn[8][4096];
	struct engine_msg msgs[10];
	size_t nm = 0;
	for (int i = 0; i < 8; i++) {
		char *p = turn[i];
		size_t o = 0;
		for (int k = 0; k < items && o + 200 < sizeof turn[i]; k++)
			o += (size_t)snprintf(p + o, sizeof turn[i] - o,
					      "Item %d.%d: the quick brown fox number %d jumps over lazy dog %d. ", i,
					      k, i * 31 + k, k * 7 + i);
		msgs[nm++] = (struct engine_msg){i % 2 ? "assistant" : "user", p};
	}
	msgs[nm++] = (struct engine_msg){"user", "Summarise that in one sentence."};
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g1 = {.max_tokens = 1, .add_generation_prompt = true};
	struct engine_gen_opts g = {.max_tokens = 16, .add_generation_prompt = true};

	/* session 1: prefill, export, save encrypted */
	char model_id[33];
	engine *e = start(smol, model_id);
	struct engine_event ev = wait_req(e, engine_submit(e, 7, msgs, nm - 1, &s, &g1), NULL);
	CHECK(ev.type == ENGINE_EV_DONE && ev.stats.prompt_tokens > want, "prefill: %u tokens (%s)",
	      ev.stats.prompt_tokens, ev.message);
	uint32_t n_prefilled = ev.stats.ctx_used;
	ev = wait_req(e, engine_conv_export(e, 7), NULL);
	CHECK(ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len > 0 && ev.position == n_prefilled,
	      "export: %zu bytes, %u tokens", ev.blob_len, ev.position);
	struct history *h = open_store(dir);
	char err[256];
	int rc = kvstore_save(h, "conv-7", model_id, ev.blob, ev.blob_len, 0, err, sizeof err);
	CHECK(rc == 0, "kvstore_save: %s", err);
	/* the token ids of the prefix must not appear on disk in clear */
	const int32_t *toks = (const int32_t *)((const char *)ev.blob + 40);
	char kvdir[4096];
	snprintf(kvdir, sizeof kvdir, "%s/kv", dir);
	static char snaps[8][4400];
	int files = list_snaps(kvdir, snaps, 8), leaks = 0;
	for (int i = 0; i < files && i < 8; i++) {
		leaks += file_contains(snaps[i], toks + 100, 64);
		struct stat st;
		stat(snaps[i], &st);
		CHECK((st.st_mode & 0777) == 0600, "snapshot mode %o", st.st_mode & 0777);
	}
	CHECK(files == 1 && leaks == 0, "%d snapshot files, %d with plaintext", files, leaks);
	engine_event_clear(&ev);
	history_close(h);
	engine_free(e);

	/* session 2 (after a restart): restore and answer */
	e = start(smol, NULL);
	h = open_store(dir);
	void *blob = NULL;
	size_t blen = 0;
	rc = kvstore_load(h, "conv-7", model_id, &blob, &blen, err, sizeof err);
	CHECK(rc == 0 && blen > 0, "kvstore_load: %s", err);
	ev = wait_req(e, engine_conv_import(e, 7, blob, blen), NULL);
	CHECK(ev.type == ENGINE_EV_CONV_IMPORT && ev.position == n_prefilled, "import: %u tokens (%s)", ev.position,
	      ev.message);
	char *restored_text;
	ev = wait_req(e, engine_submit(e, 7, msgs, nm, &s, &g), &restored_text);
	CHECK(ev.type == ENGINE_EV_DONE && ev.stats.prompt_reused + 40 > n_prefilled,
	      "restored turn reused %u of %u", ev.stats.prompt_reused, ev.stats.prompt_tokens);
	double ttft_restored = ev.stats.ttft_ms;
	uint32_t total = ev.stats.prompt_tokens;
	engine_free(e);

	/* the same turn re-prefilled from nothing */
	e = start(smol, NULL);
	char *fresh_text;
	ev = wait_req(e, engine_submit(e, 7, msgs, nm, &s, &g), &fresh_text);
	CHECK(ev.type == ENGINE_EV_DONE && ev.stats.prompt_reused == 0, "re-prefill");
	double ttft_fresh = ev.stats.ttft_ms;
	CHECK(strcmp(restored_text, fresh_text) == 0, "restored vs re-prefilled replies differ:\n  %s\n  %s",
	      restored_text, fresh_text);
	printf("resume a %u-token conversation: time to first token %.0f ms with the restored cache, %.0f ms re-prefilling (%.1fx)\n",
	       total, ttft_restored, ttft_fresh, ttft_fresh / (ttft_restored > 0 ? ttft_restored : 1));
	CHECK(ttft_restored * 2 < ttft_fresh, "restored %.0f ms not much faster than %.0f ms", ttft_restored, ttft_fresh);
	free(restored_text);
	free(fresh_text);

	/* a damaged snapshot is refused by the engine (and the next submit just
	 * prefills) */
	((unsigned char *)blob)[16] ^= 1;
	ev = wait_req(e, engine_conv_import(e, 8, blob, blen), NULL);
	CHECK(ev.type == ENGINE_EV_CONV_IMPORT && ev.position == 0 && strstr(ev.message, "another model"),
	      "damaged snapshot: %u (%s)", ev.position, ev.message);
	((unsigned char *)blob)[16] ^= 1;
	engine_free(e);

	/* another model refuses it */
	if (tu_model(GEMMA3_FILE, gemma, sizeof gemma)) {
		e = start(gemma, NULL);
		ev = wait_req(e, engine_conv_import(e, 7, blob, blen), NULL);
		CHECK(ev.type == ENGINE_EV_CONV_IMPORT && ev.position == 0, "gemma took a SmolLM2 snapshot");
		engine_free(e);
	}
	free(blob);

	/* a damaged file on disk is dropped as a cache miss */
	files = list_snaps(kvdir, snaps, 8);
	for (int i = 0; i < files && i < 8; i++) {
		FILE *f = fopen(snaps[i], "r+b");
		if (!f)
			continue;
		fseek(f, 200, SEEK_SET);
		int c = fgetc(f);
		fseek(f, 200, SEEK_SET);
		fputc(c ^ 0x40, f);
		fclose(f);
	}
	rc = kvstore_load(h, "conv-7", model_id, &blob, &blen, err, sizeof err);
	CHECK(rc == HISTORY_E_NOTFOUND, "damaged snapshot file: rc %d", rc);

	/* the budget evicts the oldest snapshots */
	static unsigned char big[1 << 20];
	for (int i = 0; i < 4; i++) {
		char cid[32];
		snprintf(cid, sizeof cid, "conv-%d", 100 + i);
		big[0] = (unsigned char)i;
		rc = kvstore_save(h, cid, model_id, big, sizeof big, (size_t)5 << 19, err, sizeof err);
		CHECK(rc == 0, "save %s: %s", cid, err);
		sleep(i < 3 ? 1 : 0); /* distinct modification times */
	}
	rc = kvstore_load(h, "conv-100", model_id, &blob, &blen, err, sizeof err);
	CHECK(rc == HISTORY_E_NOTFOUND, "oldest snapshot evicted: rc %d", rc);
	rc = kvstore_load(h, "conv-103", model_id, &blob, &blen, err, sizeof err);
	CHECK(rc == 0 && blen == sizeof big && ((unsigned char *)blob)[0] == 3, "newest kept");
	free(blob);

	/* a conversation's snapshots, of every model, go with it */
	int before = list_snaps(kvdir, snaps, 8);
	static const char small[] = "snapshot";
	CHECK(kvstore_save(h, "conv-200", model_id, small, sizeof small, 0, err, sizeof err) == 0 &&
		      kvstore_save(h, "conv-200", "another-model", small, sizeof small, 0, err, sizeof err) == 0 &&
		      kvstore_save(h, "conv-201", "another-model", small, sizeof small, 0, err, sizeof err) == 0,
	      "three small snapshots: %s", err);
	CHECK(list_snaps(kvdir, snaps, 8) == before + 3, "filed");
	rc = kvstore_remove_conv(h, "conv-200", err, sizeof err);
	CHECK(rc == 2, "both of its snapshots removed: %d (%s)", rc, err);
	CHECK(list_snaps(kvdir, snaps, 8) == before + 1, "the others stay");
	rc = kvstore_load(h, "conv-200", "another-model", &blob, &blen, err, sizeof err);
	CHECK(rc == HISTORY_E_NOTFOUND, "gone: rc %d", rc);
	rc = kvstore_load(h, "conv-201", "another-model", &blob, &blen, err, sizeof err);
	CHECK(rc == 0 && blen == sizeof small, "another conversation's kept: rc %d", rc);
	free(blob);
	CHECK(kvstore_remove_conv(h, "conv-200", err, sizeof err) == 0, "nothing left to remove");
	CHECK(kvstore_remove(h, "conv-201", "another-model", err, sizeof err) == 0 &&
		      list_snaps(kvdir, snaps, 8) == before, "kvstore_remove removes one");
	history_close(h);

	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return tu_finish();
}
