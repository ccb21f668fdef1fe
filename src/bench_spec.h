/*
 * bench_spec.h - the speculative-decoding benchmark of `ttychat bench
 * --spec` (see bench_spec.c).
 */
#ifndef TTYCHAT_BENCH_SPEC_H
#define TTYCHAT_BENCH_SPEC_H

#include <stdbool.h>

#include "engine.h"

struct bench_spec_opts {
	enum engine_spec spec;     /* the mode measured against OFF */
	const char *mode_name;     /* its name, for the table */
	int n_gen;                 /* max tokens per reply */
	int reps;                  /* replies per mode and task */
	const char *prompt;        /* one more task's prompt, or NULL */
	int draft_max;             /* engine_gen_opts.draft_max */
	bool json;
};

/* Runs the tasks on E (a model loaded) and prints the table or JSON.  0,
 * or an exit status with the message in err. */
int bench_spec_run(engine *e, const struct bench_spec_opts *o, char *err, size_t errlen);

#endif
