/*
 * cuda-membw - the device memory bandwidth a copy kernel achieves on CUDA
 * device 0 (cuda_membw() of engine/cuda/cuda_backend.h), for
 * scripts/bench-cuda: decode tok/s times bytes per token is compared with
 * this figure.  Built by `make scripts/cuda-membw` (a CUDA build only),
 * with the CUDA runtime linked statically, so it runs wherever ttychat's
 * CUDA backend runs.
 *
 * usage: cuda-membw [-m MIB] [-r REPS]   (default 1024 MiB, 20 reps)
 * prints one line: "device=NAME bytes=N reps=R median_gbps=X"; exit 0,
 * 1 on a CUDA error, 2 on a usage error, 77 without a usable device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"

static long arg_num(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= lo && v <= hi ? v : -1;
}

int main(int argc, char **argv)
{
	long mib = 1024, reps = 20;
	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && strcmp(argv[i], "-m") == 0)
			mib = arg_num(argv[++i], 1, 1 << 20);
		else if (i + 1 < argc && strcmp(argv[i], "-r") == 0)
			reps = arg_num(argv[++i], 1, 1000);
		else
			mib = -1;
		if (mib < 0 || reps < 0) {
			fprintf(stderr, "usage: cuda-membw [-m MIB] [-r REPS]\n");
			return 2;
		}
	}
	char err[256];
	if (cuda_backend_available(err, sizeof err) <= 0) {
		fprintf(stderr, "cuda-membw: %s\n", err);
		return 77;
	}
	struct cuda_device_info info;
	cuda_ctx *c = NULL;
	if (cuda_device_query(0, &info, err, sizeof err) != 0 || cuda_ctx_create(&c, 0, err, sizeof err) != 0) {
		fprintf(stderr, "cuda-membw: %s\n", err);
		return 1;
	}
	double gbps = 0.0;
	const size_t bytes = (size_t)mib << 20;
	if (cuda_membw(c, bytes, (int)reps, &gbps) != 0) {
		fprintf(stderr, "cuda-membw: %s\n", cuda_ctx_error(c));
		cuda_ctx_free(c);
		return 1;
	}
	for (char *p = info.name; *p; p++)
		if (*p == ' ')
			*p = '_';
	printf("device=%s bytes=%zu reps=%ld median_gbps=%.1f\n", info.name, bytes, reps, gbps);
	cuda_ctx_free(c);
	return 0;
}
