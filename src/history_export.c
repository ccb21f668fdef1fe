/*
 * history_export.c - Markdown and JSON renderings of a conversation (see
 * history_export.h).  JSON is built with cJSON from text first cleaned to
 * valid UTF-8; Markdown is written directly.  Buffers that held message
 * text are wiped before they are freed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "history_export.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

/* Length of the valid UTF-8 sequence at S (N bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c >= 0x01 && c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	unsigned cp = c & (0xff >> (len + 1));
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

char *history_utf8_clean(const char *s, size_t n)
{
	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	char *out = malloc(n * 3 + 1), *o = out;
	if (!out)
		return NULL;
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		size_t l = utf8_seq(p + i, n - i);
		if (l) {
			memcpy(o, p + i, l);
			o += l;
			i += l;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	*o = '\0';
	return out;
}

void history_format_time(int64_t ms, int local, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if ((local ? localtime_r(&t, &tm) : gmtime_r(&t, &tm)) == NULL ||
	    strftime(buf, 32, local ? "%Y-%m-%d %H:%M" : "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, "?");
}

static const char *role_name(enum history_role r)
{
	return r == HISTORY_ROLE_SYSTEM ? "system" : r == HISTORY_ROLE_USER ? "user" : "assistant";
}

static void wipe_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

static int add_clean(cJSON *o, const char *key, const char *s, size_t n)
{
	char *c = history_utf8_clean(s, n);
	if (!c)
		return -1;
	cJSON *v = cJSON_AddStringToObject(o, key, c);
	wipe_free(c);
	return v ? 0 : -1;
}

static int export_json(const struct history_conv *c, unsigned flags, FILE *out)
{
	const struct history_meta *m = history_conv_meta(c);
	cJSON *j = cJSON_CreateObject(), *samp = NULL, *msgs = NULL;
	char t[32];
	int bad = !j;
	bad = bad || !cJSON_AddStringToObject(j, "id", history_conv_id(c));
	const char *title = history_conv_title(c);
	bad = bad || add_clean(j, "title", title, strlen(title));
	bad = bad || add_clean(j, "model", m->model ? m->model : "", m->model ? strlen(m->model) : 0);
	if (m->system_prompt)
		bad = bad || add_clean(j, "system_prompt", m->system_prompt, strlen(m->system_prompt));
	else
		bad = bad || !cJSON_AddNullToObject(j, "system_prompt");
	bad = bad || !cJSON_AddNumberToObject(j, "created_ms", (double)history_conv_created(c));
	bad = bad || !cJSON_AddNumberToObject(j, "updated_ms", (double)history_conv_updated(c));
	history_format_time(history_conv_created(c), 0, t);
	bad = bad || !cJSON_AddStringToObject(j, "created", t);
	history_format_time(history_conv_updated(c), 0, t);
	bad = bad || !cJSON_AddStringToObject(j, "updated", t);
	bad = bad || !(samp = cJSON_AddObjectToObject(j, "sampling"));
	if (!bad) {
		if (m->temperature >= 0)
			bad = bad || !cJSON_AddNumberToObject(samp, "temperature", m->temperature);
		if (m->top_p >= 0)
			bad = bad || !cJSON_AddNumberToObject(samp, "top_p", m->top_p);
		if (m->min_p >= 0)
			bad = bad || !cJSON_AddNumberToObject(samp, "min_p", m->min_p);
		if (m->repeat_penalty >= 0)
			bad = bad || !cJSON_AddNumberToObject(samp, "repeat_penalty", m->repeat_penalty);
		if (m->top_k >= 0)
			bad = bad || !cJSON_AddNumberToObject(samp, "top_k", m->top_k);
		if (m->context_size)
			bad = bad || !cJSON_AddNumberToObject(samp, "context_size", m->context_size);
		if (m->think == 1 || m->think == 2)
			bad = bad || !cJSON_AddStringToObject(samp, "think", m->think == 1 ? "on" : "off");
		if (m->reasoning_effort)
			bad = bad || add_clean(samp, "reasoning_effort", m->reasoning_effort, strlen(m->reasoning_effort));
		if (m->reasoning_budget)
			bad = bad || !cJSON_AddNumberToObject(samp, "reasoning_budget", m->reasoning_budget);
	}
	bad = bad || !(msgs = cJSON_AddArrayToObject(j, "messages"));
	for (size_t i = 0; !bad && i < history_conv_count(c); i++) {
		const struct history_msg *msg = history_conv_msg(c, i);
		if (msg->replaced && !(flags & HISTORY_EXPORT_ALL))
			continue;
		cJSON *o = cJSON_CreateObject();
		bad = !o || !cJSON_AddItemToArray(msgs, o);
		if (bad) {
			cJSON_Delete(o);
			break;
		}
		history_format_time(msg->time_ms, 0, t);
		bad = !cJSON_AddStringToObject(o, "role", role_name(msg->role)) ||
		      add_clean(o, "text", msg->text, msg->len) ||
		      !cJSON_AddNumberToObject(o, "time_ms", (double)msg->time_ms) ||
		      !cJSON_AddStringToObject(o, "time", t) ||
		      !cJSON_AddBoolToObject(o, "cancelled", (msg->flags & HISTORY_MSG_CANCELLED) != 0) ||
		      !cJSON_AddBoolToObject(o, "replaced", msg->replaced);
		if (!bad && msg->reasoning_len)
			bad = add_clean(o, "reasoning", msg->reasoning, msg->reasoning_len) != 0;
	}
	char *s = bad ? NULL : cJSON_Print(j);
	cJSON_Delete(j);
	if (!s) {
		errno = ENOMEM;
		return -1;
	}
	int rc = fputs(s, out) < 0 || fputc('\n', out) == EOF ? -1 : 0;
	wipe_free(s);
	return rc;
}

static int export_md(const struct history_conv *c, unsigned flags, FILE *out)
{
	const struct history_meta *m = history_conv_meta(c);
	char t1[32], t2[32];
	history_format_time(history_conv_created(c), 0, t1);
	history_format_time(history_conv_updated(c), 0, t2);
	const char *title = history_conv_title(c);
	fprintf(out, "# %s\n\n", title[0] ? title : "(untitled)");
	fprintf(out, "- id: %s\n- model: %s\n- created: %s\n- updated: %s\n", history_conv_id(c),
		m->model && m->model[0] ? m->model : "(unknown)", t1, t2);
	if (m->system_prompt)
		fprintf(out, "\n## System prompt\n\n%s\n", m->system_prompt);
	for (size_t i = 0; i < history_conv_count(c); i++) {
		const struct history_msg *msg = history_conv_msg(c, i);
		if (msg->replaced && !(flags & HISTORY_EXPORT_ALL))
			continue;
		const char *who = msg->role == HISTORY_ROLE_USER ? "User"
				  : msg->role == HISTORY_ROLE_ASSISTANT ? "Assistant" : "System";
		char *text = history_utf8_clean(msg->text, msg->len);
		if (!text) {
			errno = ENOMEM;
			return -1;
		}
		if (msg->reasoning_len) {
			char *r = history_utf8_clean(msg->reasoning, msg->reasoning_len);
			if (!r) {
				wipe_free(text);
				errno = ENOMEM;
				return -1;
			}
			/* the reasoning as a quote above the answer */
			fprintf(out, "\n## %s%s\n\n> *Reasoning:* ", who, msg->replaced ? " (replaced)" : "");
			for (const char *p = r; *p; p++)
				fputs(*p == '\n' ? "\n> " : (char[2]){*p, 0}, out);
			fprintf(out, "\n\n%s", text);
			wipe_free(r);
		} else {
			fprintf(out, "\n## %s%s\n\n%s", who, msg->replaced ? " (replaced)" : "", text);
		}
		wipe_free(text);
		fprintf(out, "%s\n", msg->flags & HISTORY_MSG_CANCELLED ? "\n\n*(reply cancelled)*" : "");
	}
	return ferror(out) ? -1 : 0;
}

int history_export_with(const struct history_conv *c, enum history_export_format f, unsigned flags, FILE *out)
{
	return f == HISTORY_EXPORT_JSON ? export_json(c, flags, out) : export_md(c, flags, out);
}

int history_export(const struct history_conv *c, enum history_export_format f, FILE *out)
{
	return history_export_with(c, f, 0, out);
}
