/*
 * memory.c - how much RAM a model needs and how much this machine has.
 *
 * One accounting for every place that asks: the model picker's "fits /
 * tight / does not fit" and the load's refusal of a model that cannot
 * fit (a clear line with the numbers instead of an OOM kill later).
 *
 * Needed: the weights (the file's tensor bytes: the kernels read the
 * mapped file in place, and a packed copy gives the mapped pages of what
 * it copies back, so there is one copy either way), the KV cache at the
 * context the model loads with, and scratch (activations, logits, rope
 * tables: 5% of the weights, at least 32 MiB).
 *
 * Available: MemAvailable, lowered to the room left under the cgroup's
 * limit (v2 memory.max - memory.current, else v1 limit - usage) when the
 * process runs in a container, and to TTYCHAT_MEM_LIMIT (bytes, or with a
 * K/M/G suffix) when that is set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* The first unsigned number in file PATH; false when absent ("max"). */
static bool read_u64_file(const char *path, uint64_t *v)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	unsigned long long x;
	bool ok = fscanf(f, "%llu", &x) == 1;
	fclose(f);
	if (ok)
		*v = x;
	return ok;
}

static uint64_t meminfo_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return 0;
	char line[256];
	uint64_t kb = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long v;
		if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
			kb = v;
			break;
		}
	}
	fclose(f);
	return kb > UINT64_MAX / 1024 ? 0 : kb * 1024;
}

/* Room under this process's cgroup limit; UINT64_MAX when unlimited. */
static uint64_t cgroup_room(void)
{
	uint64_t max, cur;
	if (read_u64_file("/sys/fs/cgroup/memory.max", &max) &&
	    read_u64_file("/sys/fs/cgroup/memory.current", &cur))
		return max > cur ? max - cur : 0;
	if (read_u64_file("/sys/fs/cgroup/memory/memory.limit_in_bytes", &max) &&
	    read_u64_file("/sys/fs/cgroup/memory/memory.usage_in_bytes", &cur) && max < ((uint64_t)1 << 62))
		return max > cur ? max - cur : 0;
	return UINT64_MAX;
}

/* TTYCHAT_MEM_LIMIT as bytes; UINT64_MAX when unset or unreadable. */
static uint64_t env_limit(void)
{
	const char *s = getenv("TTYCHAT_MEM_LIMIT");
	if (!s || !*s)
		return UINT64_MAX;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return UINT64_MAX;
	int shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if ((*end && strcmp(end, "B") != 0 && strcmp(end, "iB") != 0) || v > (UINT64_MAX >> shift))
		return UINT64_MAX;
	return (uint64_t)v << shift;
}

uint64_t engine_mem_available(void)
{
	uint64_t avail = meminfo_available(), room = cgroup_room(), lim = env_limit();
	if (avail == 0)
		avail = UINT64_MAX;
	if (room < avail)
		avail = room;
	if (lim < avail)
		avail = lim;
	return avail == UINT64_MAX ? 0 : avail;
}

uint64_t engine_mem_scratch(uint64_t weight_bytes)
{
	uint64_t s = weight_bytes / 20;
	return s < ((uint64_t)32 << 20) ? (uint64_t)32 << 20 : s;
}

uint64_t engine_mem_need(uint64_t weight_bytes, uint64_t kv_bytes)
{
	return weight_bytes + kv_bytes + engine_mem_scratch(weight_bytes);
}
