/*
 * test_engine_device.c - engine_load_opts.device and gpu_layers through
 * the public API, on the real SmolLM2, on whatever machine runs it.
 *
 * Without a usable GPU (no driver or device here, or a build without
 * CUDA): device CUDA loads all the same, on the CPU (LOADED, backend
 * "cpu") with the one-line notice "no CUDA device: ...; running on the
 * CPU", answers, and reports no VRAM; AUTO says nothing.  With a GPU the
 * CUDA load names the device and its layers ("cuda: NAME (N/M layers)")
 * and VRAM figures come with LOADED and DONE.  Everywhere: device CPU and
 * gpu_layers NONE run on the CPU without a notice, an out-of-range device
 * value is taken as AUTO, and a KV snapshot exported on one placement
 * imports on the other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

/* Loads PATH and returns the LOADED event's info and stats (rc 0), or the
 * error code. */
static int load_info(engine *e, const char *path, const struct engine_load_opts *lo,
		     struct engine_model_info *info, struct engine_stats *st)
{
	int req = engine_load(e, path, lo);
	struct engine_event ev;
	while (engine_event_wait(e, &ev, 60000)) {
		if (ev.request == req && ev.type == ENGINE_EV_LOADED) {
			*info = ev.info;
			*st = ev.stats;
			return 0;
		}
		if (ev.request == req && ev.type == ENGINE_EV_ERROR)
			return ev.code;
		engine_event_clear(&ev);
	}
	return -1000;
}

/* A greedy reply of a few tokens; returns it (malloc'd) with its stats. */
static char *ask(engine *e, uint64_t conv, struct engine_stats *st)
{
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g = {.max_tokens = 12, .add_generation_prompt = true};
	struct engine_msg q[] = {{"user", "Tell me the capital of France."}};
	int req = engine_submit(e, conv, q, 1, &s, &g);
	size_t len = 0;
	char *text = calloc(1, 1);
	struct engine_event ev;
	while (text && engine_event_wait(e, &ev, 60000)) {
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_TOKEN) {
			char *t = realloc(text, len + ev.text_len + 1);
			if (t) {
				memcpy(t + len, ev.text, ev.text_len);
				len += ev.text_len;
				t[len] = '\0';
			}
			text = t;
		} else if (ev.type == ENGINE_EV_DONE) {
			*st = ev.stats;
			return text;
		} else if (ev.type == ENGINE_EV_ERROR) {
			fprintf(stderr, "submit: %s\n", ev.message);
			break;
		}
		engine_event_clear(&ev);
	}
	free(text);
	return NULL;
}

/* The KV snapshot of conversation CONV (malloc'd), its length in *len. */
static void *export_conv(engine *e, uint64_t conv, size_t *len)
{
	int req = engine_conv_export(e, conv);
	struct engine_event ev;
	*len = 0;
	while (engine_event_wait(e, &ev, 60000)) {
		if (ev.request == req && ev.type == ENGINE_EV_CONV_EXPORT) {
			*len = ev.blob_len;
			return ev.blob;
		}
		engine_event_clear(&ev);
	}
	return NULL;
}

static uint32_t import_conv(engine *e, uint64_t conv, const void *blob, size_t len)
{
	int req = engine_conv_import(e, conv, blob, len);
	struct engine_event ev;
	while (engine_event_wait(e, &ev, 60000)) {
		if (ev.request == req && ev.type == ENGINE_EV_CONV_IMPORT)
			return ev.position;
		engine_event_clear(&ev);
	}
	return 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

int main(void)
{
	char path[4096], err[512];
	if (!tu_model(SMOLLM2_FILE, path, sizeof path))
		tu_skip("SmolLM2 model not found (run scripts/fetch-models)");
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	if (!e)
		return tu_finish();
	struct engine_model_info info;
	struct engine_stats st;

	/* the CPU, asked for */
	struct engine_load_opts cpu = {.device = ENGINE_DEVICE_CPU};
	int rc = load_info(e, path, &cpu, &info, &st);
	CHECK(rc == 0, "device CPU: load rc %d", rc);
	CHECK(strcmp(info.backend, "cpu") == 0 && info.notice[0] == '\0', "device CPU: backend '%s' notice '%s'",
	      info.backend, info.notice);
	CHECK(st.vram_total == 0 && st.vram_ours == 0, "device CPU: no VRAM in LOADED");
	char *ref = ask(e, 1, &st);
	CHECK(ref && strstr(ref, "Paris"), "device CPU: '%s'", ref ? ref : "(none)");
	CHECK(st.vram_total == 0 && st.vram_free == 0 && st.vram_ours == 0, "device CPU: no VRAM in DONE");
	size_t blob_len = 0;
	void *blob = export_conv(e, 1, &blob_len);
	CHECK(blob && blob_len > 0, "export on the CPU");

	/* CUDA, asked for: the GPU, or the CPU with one notice line */
	struct engine_load_opts cuda = {.device = ENGINE_DEVICE_CUDA};
	rc = load_info(e, path, &cuda, &info, &st);
	CHECK(rc == 0, "device CUDA: LOADED, not an error (rc %d)", rc);
	const int have_gpu = strncmp(info.backend, "cuda: ", 6) == 0;
	if (have_gpu) {
		printf("note: a usable GPU: %s %s\n", info.backend, info.notice);
		CHECK(strstr(info.backend, " layers)") != NULL, "backend names the layers: '%s'", info.backend);
		CHECK(st.vram_total > 0 && st.vram_ours > 0 && st.vram_free <= st.vram_total,
		      "LOADED VRAM: total %llu free %llu ours %llu", (unsigned long long)st.vram_total,
		      (unsigned long long)st.vram_free, (unsigned long long)st.vram_ours);
	} else {
		CHECK(strcmp(info.backend, "cpu") == 0, "no GPU: backend '%s'", info.backend);
		CHECK((strncmp(info.notice, "no CUDA device: ", 16) == 0 || strncmp(info.notice, "CUDA: ", 6) == 0) &&
		      ends_with(info.notice, "; running on the CPU") && !strchr(info.notice, '\n'),
		      "no GPU: one-line notice '%s'", info.notice);
		CHECK(st.vram_total == 0 && st.vram_ours == 0, "no GPU: no VRAM");
	}
	/* the snapshot made on the CPU placement imports here */
	CHECK(blob && import_conv(e, 1, blob, blob_len) > 0, "CPU snapshot imported on the %s placement",
	      info.backend);
	char *got = ask(e, 1, &st);
	CHECK(got && strstr(got, "Paris"), "device CUDA: answers: '%s'", got ? got : "(none)");
	if (!have_gpu)
		CHECK(got && ref && strcmp(got, ref) == 0, "no GPU: the CPU's reply ('%s' vs '%s')", got, ref);
	else
		CHECK(st.vram_total > 0 && st.vram_ours > 0, "DONE VRAM on the GPU");
	free(got);
	/* and a snapshot made here imports on the CPU */
	free(blob);
	blob = export_conv(e, 1, &blob_len);
	CHECK(blob && blob_len > 0, "export on the %s placement", info.backend);
	rc = load_info(e, path, &cpu, &info, &st);
	CHECK(rc == 0 && blob && import_conv(e, 1, blob, blob_len) > 0, "that snapshot imported on the CPU");
	free(blob);

	/* AUTO: quiet without a GPU */
	struct engine_load_opts autod = {0};
	rc = load_info(e, path, &autod, &info, &st);
	CHECK(rc == 0, "AUTO: load rc %d", rc);
	if (!have_gpu)
		CHECK(strcmp(info.backend, "cpu") == 0 && info.notice[0] == '\0', "AUTO without a GPU: '%s' '%s'",
		      info.backend, info.notice);
	/* CUDA with no layers asked for: the CPU, no notice */
	struct engine_load_opts none = {.device = ENGINE_DEVICE_CUDA, .gpu_layers = ENGINE_GPU_LAYERS_NONE};
	rc = load_info(e, path, &none, &info, &st);
	CHECK(rc == 0 && strcmp(info.backend, "cpu") == 0 && info.notice[0] == '\0',
	      "gpu_layers NONE: rc %d backend '%s' notice '%s'", rc, info.backend, info.notice);
	/* a device value out of range is AUTO, not a crash */
	struct engine_load_opts odd = {.device = (enum engine_device)7, .gpu_layers = 3};
	rc = load_info(e, path, &odd, &info, &st);
	CHECK(rc == 0, "device 7: load rc %d", rc);
	got = ask(e, 2, &st);
	CHECK(got && strstr(got, "Paris"), "device 7: answers");
	free(got);
	free(ref);
	engine_free(e);
	return tu_finish();
}
