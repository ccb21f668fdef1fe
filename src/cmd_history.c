/*
 * cmd_history.c - `ttychat history list|show|search|export|rm|repair|passwd`.
 *
 * A thin front end over history.h: it opens the store in the default data
 * directory, gets the passphrase through passphrase.h (environment or
 * terminal, never argv), and prints.  Text from conversations that goes to
 * a terminal has its control characters made visible, so a stored escape
 * sequence cannot drive the user's terminal; to a pipe it is untouched.
 * show, export and search work on the conversation as it stands (the
 * rewinds of /regen and /edit applied, history.h); with --all they take
 * every version and mark the replaced ones.  rm also removes the
 * conversation's KV snapshots (kvstore.h).
 * Exit status: 0, 1 (I/O error, damaged file, not found), 2 (usage),
 * 5 (wrong passphrase or the key cannot be unlocked).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "commands.h"
#include "history.h"
#include "history_export.h"
#include "kvstore.h"
#include "passphrase.h"

static void history_usage(FILE *out)
{
	fprintf(out, "usage: ttychat history list [--json]\n"
		     "       ttychat history show ID [--all]\n"
		     "       ttychat history search TEXT [--all]\n"
		     "       ttychat history export ID [--format md|json] [--all]\n"
		     "       ttychat history rm ID\n"
		     "       ttychat history repair ID\n"
		     "       ttychat history passwd [--remove]\n"
		     "ID is a conversation ID or a prefix of at least 4 digits.  show, search and\n"
		     "export see the conversation as it stands; --all adds the versions replaced\n"
		     "by /regen and /edit, marked as replaced.  A damaged conversation shows the\n"
		     "messages before the damage; repair copies the file to ID.tch.damaged and\n"
		     "keeps those.\n"
		     "The passphrase comes from TTYCHAT_PASSPHRASE_FD or TTYCHAT_PASSPHRASE_FILE,\n"
		     "else from the terminal; a new one (passwd) from TTYCHAT_NEW_PASSPHRASE_FD or\n"
		     "TTYCHAT_NEW_PASSPHRASE_FILE, else from the terminal.\n");
}

static int exit_for(int rc)
{
	if (rc == HISTORY_E_PASSPHRASE || rc == HISTORY_E_CANCELLED || rc == HISTORY_E_BUSY ||
	    rc == HISTORY_E_WRONGKEY)
		return EXIT_HISTORY;
	return rc >= 0 ? EXIT_OK : EXIT_FAIL;
}

/* Writes N bytes of conversation text; on a terminal, controls other than
 * newline and tab (and, with ONE_LINE, those too) become visible. */
static void put_safe(const char *s, size_t n, bool tty, bool one_line)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (one_line && (ch == '\n' || ch == '\t' || ch == '\r')) {
			putchar(' ');
		} else if (tty && ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f)) {
			unsigned cp = ch == 0x7f ? 0x2421 : 0x2400 + ch; /* control pictures */
			putchar((int)(0xe0 | (cp >> 12)));
			putchar((int)(0x80 | ((cp >> 6) & 0x3f)));
			putchar((int)(0x80 | (cp & 0x3f)));
		} else if (tty && ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
			   (unsigned char)s[i + 1] < 0xa0) {
			fputs("\xef\xbf\xbd", stdout); /* a C1 control */
			i++;
		} else {
			putchar(ch);
		}
	}
}

static void put_str(const char *s, bool tty, bool one_line)
{
	put_safe(s, strlen(s), tty, one_line);
}

static int open_store(struct history **h, unsigned flags, struct passphrase_src *ps)
{
	char err[512];
	struct history_opts o = {.flags = flags, .passphrase = passphrase_get, .pass_ctx = ps};
	int rc = history_open(&o, h, err, sizeof err);
	if (rc == HISTORY_E_CANCELLED && ps->err[0])
		fprintf(stderr, "ttychat: %s\n", ps->err);
	else if (rc != HISTORY_OK)
		fprintf(stderr, "ttychat: %s\n", err);
	return rc;
}

static int do_list(struct history *h, bool json)
{
	struct history_entry *v;
	size_t n;
	int rc = history_conv_list(h, &v, &n);
	if (rc != HISTORY_OK) {
		fprintf(stderr, "ttychat: %s\n", history_errmsg(h));
		return exit_for(rc);
	}
	bool tty = isatty(STDOUT_FILENO);
	int bad = 0;
	if (json) {
		cJSON *a = cJSON_CreateArray();
		for (size_t i = 0; a && i < n; i++) {
			cJSON *o = cJSON_CreateObject();
			char *t = history_utf8_clean(v[i].title, strlen(v[i].title));
			char *m = history_utf8_clean(v[i].model, strlen(v[i].model));
			if (!o || !t || !m || !cJSON_AddItemToArray(a, o)) {
				cJSON_Delete(o);
				free(t);
				free(m);
				cJSON_Delete(a);
				a = NULL;
				break;
			}
			cJSON_AddStringToObject(o, "id", v[i].id);
			cJSON_AddStringToObject(o, "title", t);
			cJSON_AddStringToObject(o, "model", m);
			cJSON_AddNumberToObject(o, "created_ms", (double)v[i].created_ms);
			cJSON_AddNumberToObject(o, "updated_ms", (double)v[i].updated_ms);
			cJSON_AddNumberToObject(o, "messages", (double)v[i].n_messages);
			if (v[i].status < 0 || v[i].status == HISTORY_DAMAGED)
				cJSON_AddStringToObject(o, "error", v[i].error);
			if (v[i].status == HISTORY_DAMAGED)
				cJSON_AddTrueToObject(o, "damaged");
			sodium_memzero(t, strlen(t));
			free(t);
			free(m);
		}
		char *s = a ? cJSON_Print(a) : NULL;
		cJSON_Delete(a);
		if (!s) {
			history_list_free(v, n);
			fprintf(stderr, "ttychat: out of memory\n");
			return EXIT_FAIL;
		}
		puts(s);
		sodium_memzero(s, strlen(s));
		free(s);
	} else if (n == 0) {
		fprintf(stderr, "no conversations yet\n");
	} else {
		printf("%-12s  %-16s  %5s  %-20s  %s\n", "ID", "UPDATED", "MSGS", "MODEL", "TITLE");
		for (size_t i = 0; i < n; i++) {
			char t[32];
			if (v[i].status < 0) {
				printf("%.12s  %-16s  %5s  %-20s  ", v[i].id, "-", "-", "-");
				printf("[unreadable: %s]\n", history_strstatus(v[i].status));
				fprintf(stderr, "ttychat: %s\n", v[i].error);
				bad = 1;
				continue;
			}
			history_format_time(v[i].updated_ms, 1, t);
			printf("%.12s  %-16s  %5zu  ", v[i].id, t, v[i].n_messages);
			if (v[i].status == HISTORY_DAMAGED) {
				fprintf(stderr, "ttychat: %s\n", v[i].error);
				bad = 1;
			}
			const char *model = strrchr(v[i].model, '/');
			model = model ? model + 1 : v[i].model;
			char mcol[21];
			snprintf(mcol, sizeof mcol, "%s", model);
			put_str(mcol, tty, true);
			printf("%*s  ", (int)(20 - strlen(mcol)), "");
			if (v[i].status == HISTORY_DAMAGED)
				fputs("[damaged] ", stdout);
			put_str(v[i].title, tty, true);
			putchar('\n');
		}
	}
	history_list_free(v, n);
	return bad ? EXIT_FAIL : EXIT_OK;
}

static int load(struct history *h, const char *id, struct history_conv **c)
{
	int rc = history_conv_load(h, id, HISTORY_LOAD_SALVAGE, c);
	if (rc < 0)
		fprintf(stderr, "ttychat: %s\n", history_errmsg(h));
	else if (rc == HISTORY_RECOVERED)
		fprintf(stderr, "ttychat: warning: %s\n", history_errmsg(h));
	else if (rc == HISTORY_DAMAGED)
		fprintf(stderr, "ttychat: warning: %s ('ttychat history repair %.12s' keeps them)\n",
			history_errmsg(h), history_conv_id(*c));
	return rc;
}

static int do_show(struct history *h, const char *id, bool all)
{
	struct history_conv *c;
	int rc = load(h, id, &c);
	if (rc < 0)
		return exit_for(rc);
	bool tty = isatty(STDOUT_FILENO);
	const struct history_meta *m = history_conv_meta(c);
	char t1[32], t2[32];
	history_format_time(history_conv_created(c), 1, t1);
	history_format_time(history_conv_updated(c), 1, t2);
	fputs("Title:   ", stdout);
	put_str(history_conv_title(c), tty, true);
	printf("\nID:      %s\nModel:   ", history_conv_id(c));
	put_str(m->model ? m->model : "(unknown)", tty, true);
	printf("\nCreated: %s\nUpdated: %s\n", t1, t2);
	if (m->system_prompt) {
		fputs("System:  ", stdout);
		put_str(m->system_prompt, tty, false);
		putchar('\n');
	}
	for (size_t i = 0; i < history_conv_count(c); i++) {
		const struct history_msg *msg = history_conv_msg(c, i);
		if (msg->replaced && !all)
			continue;
		char t[32];
		history_format_time(msg->time_ms, 1, t);
		printf("\n[%s %s%s%s]\n", msg->role == HISTORY_ROLE_USER ? "user" : msg->role == HISTORY_ROLE_SYSTEM ? "system" : "assistant", t,
		       msg->flags & HISTORY_MSG_CANCELLED ? ", cancelled" : "", msg->replaced ? ", replaced" : "");
		if (msg->reasoning_len) {
			/* a thinking model's reasoning, apart from its answer */
			fputs("(reasoning)\n", stdout);
			put_safe(msg->reasoning, msg->reasoning_len, tty, false);
			fputs("\n(answer)\n", stdout);
		}
		put_safe(msg->text, msg->len, tty, false);
		putchar('\n');
	}
	if (rc == HISTORY_DAMAGED)
		fputs("\n[damaged: what followed these messages is unreadable]\n", stdout);
	history_conv_close(c);
	return ferror(stdout) || rc == HISTORY_DAMAGED ? EXIT_FAIL : EXIT_OK;
}

struct search_ctx {
	const char *needle;
	bool tty, all;
	size_t hits;
};

static int on_match(void *ctx, const struct history_conv *c, size_t idx)
{
	struct search_ctx *s = ctx;
	const struct history_msg *m = idx == (size_t)-1 ? NULL : history_conv_msg(c, idx);
	if (m && m->replaced && !s->all)
		return 0;
	s->hits++;
	printf("%.12s  ", history_conv_id(c));
	if (!m) {
		fputs("title      ", stdout);
		put_str(history_conv_title(c), s->tty, true);
		putchar('\n');
		return 0;
	}
	printf("%-9s  ", m->role == HISTORY_ROLE_USER ? "user" : m->role == HISTORY_ROLE_SYSTEM ? "system" : "assistant");
	if (m->replaced)
		fputs("(replaced) ", stdout);
	/* a window of about 70 bytes around the first match */
	size_t nl = strlen(s->needle), at = 0;
	for (size_t i = 0; i + nl <= m->len; i++)
		if (strncasecmp(m->text + i, s->needle, nl) == 0) {
			at = i;
			break;
		}
	size_t from = at > 30 ? at - 30 : 0, to = at + nl + 40 < m->len ? at + nl + 40 : m->len;
	while (from > 0 && ((unsigned char)m->text[from] & 0xc0) == 0x80)
		from--;
	while (to < m->len && ((unsigned char)m->text[to] & 0xc0) == 0x80)
		to++;
	if (from > 0)
		fputs("...", stdout);
	put_safe(m->text + from, to - from, s->tty, true);
	puts(to < m->len ? "..." : "");
	return 0;
}

static int do_search(struct history *h, const char *needle, bool all)
{
	struct search_ctx s = {.needle = needle, .tty = isatty(STDOUT_FILENO), .all = all};
	int rc = history_conv_search(h, needle, on_match, &s);
	if (rc != HISTORY_OK) {
		fprintf(stderr, "ttychat: %s\n", history_errmsg(h));
		return exit_for(rc);
	}
	bool partial = history_errmsg(h)[0] != '\0';
	if (partial)
		fprintf(stderr, "ttychat: warning: %s\n", history_errmsg(h));
	if (!s.hits)
		fprintf(stderr, "no matches\n");
	return s.hits && !partial ? EXIT_OK : EXIT_FAIL;
}

static int do_export(struct history *h, const char *id, const char *fmt, bool all)
{
	enum history_export_format f;
	if (strcmp(fmt, "md") == 0 || strcmp(fmt, "markdown") == 0)
		f = HISTORY_EXPORT_MD;
	else if (strcmp(fmt, "json") == 0)
		f = HISTORY_EXPORT_JSON;
	else {
		fprintf(stderr, "ttychat: --format must be md or json\n");
		return EXIT_USAGE;
	}
	struct history_conv *c;
	int rc = load(h, id, &c);
	if (rc < 0)
		return exit_for(rc);
	int w = history_export_with(c, f, all ? HISTORY_EXPORT_ALL : 0, stdout);
	history_conv_close(c);
	if (w != 0 || fflush(stdout) != 0) {
		fprintf(stderr, "ttychat: writing the export failed\n");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int do_rm(struct history *h, const char *id)
{
	char full[HISTORY_ID_LEN + 1];
	int rc = history_resolve_id(h, id, full);
	if (rc == HISTORY_OK)
		rc = history_delete(h, full);
	if (rc != HISTORY_OK) {
		fprintf(stderr, "ttychat: %s\n", history_errmsg(h));
		return exit_for(rc);
	}
	/* its KV snapshots are only a cache, but they derive from the
	 * conversation: they go with it */
	char err[256];
	if (kvstore_remove_conv(h, full, err, sizeof err) < 0)
		fprintf(stderr, "ttychat: warning: %s\n", err);
	return EXIT_OK;
}

static int do_repair(struct history *h, const char *id)
{
	int rc = history_repair(h, id);
	fprintf(stderr, "%s%s\n", rc < 0 ? "ttychat: " : "", history_errmsg(h));
	return rc < 0 ? exit_for(rc) : EXIT_OK;
}

static int do_passwd(struct history *h, bool remove, struct passphrase_src *ps)
{
	char *pw = NULL;
	size_t len = 0;
	int rc;
	if (!remove) {
		pw = sodium_malloc(1024);
		if (!pw) {
			fprintf(stderr, "ttychat: out of secure memory\n");
			return EXIT_FAIL;
		}
		ps->for_passwd = 1;
		ps->allow_empty = 0;
		if (passphrase_get(ps, HISTORY_PASS_NEW, pw, 1024) != 0) {
			fprintf(stderr, "ttychat: %s\n", ps->err);
			sodium_free(pw);
			return EXIT_HISTORY;
		}
		len = strlen(pw);
		if (!len) {
			fprintf(stderr, "ttychat: empty passphrase; use 'history passwd --remove' to remove it\n");
			sodium_free(pw);
			return EXIT_USAGE;
		}
	}
	rc = history_set_passphrase(h, pw, len);
	if (pw)
		sodium_free(pw);
	if (rc != HISTORY_OK) {
		fprintf(stderr, "ttychat: %s\n", history_errmsg(h));
		return exit_for(rc);
	}
	fprintf(stderr, remove ? "passphrase removed: the key file alone now protects the history\n"
			       : "passphrase changed\n");
	return EXIT_OK;
}

int cmd_history(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		history_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	const char *sub = argv[1];
	bool json = false, remove = false, all = false;
	const char *fmt = "md", *arg = NULL;
	for (int i = 2; i < argc; i++) {
		if (strcmp(sub, "list") == 0 && strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(sub, "passwd") == 0 && strcmp(argv[i], "--remove") == 0)
			remove = true;
		else if ((strcmp(sub, "show") == 0 || strcmp(sub, "export") == 0 || strcmp(sub, "search") == 0) &&
			 strcmp(argv[i], "--all") == 0)
			all = true;
		else if (strcmp(sub, "export") == 0 && strcmp(argv[i], "--format") == 0 && i + 1 < argc)
			fmt = argv[++i];
		else if (strcmp(sub, "export") == 0 && strncmp(argv[i], "--format=", 9) == 0)
			fmt = argv[i] + 9;
		else if (argv[i][0] != '-' && !arg)
			arg = argv[i];
		else {
			fprintf(stderr, "ttychat: history %s: unexpected argument '%s'\n", sub, argv[i]);
			history_usage(stderr);
			return EXIT_USAGE;
		}
	}
	bool needs_arg = strcmp(sub, "show") == 0 || strcmp(sub, "search") == 0 || strcmp(sub, "export") == 0 ||
			 strcmp(sub, "rm") == 0 || strcmp(sub, "repair") == 0;
	bool known = needs_arg || strcmp(sub, "list") == 0 || strcmp(sub, "passwd") == 0;
	if (!known || needs_arg != (arg != NULL)) {
		if (!known)
			fprintf(stderr, "ttychat: unknown history command '%s'\n", sub);
		history_usage(stderr);
		return EXIT_USAGE;
	}
	struct passphrase_src ps;
	passphrase_src_init(&ps);
	struct history *h;
	bool passwd = strcmp(sub, "passwd") == 0;
	bool fresh = false;
	if (passwd) {
		/* no key yet: creating it with the new passphrase is the whole job */
		char dir[4096], key[4200];
		fresh = history_default_dir(dir, sizeof dir) == 0 &&
			snprintf(key, sizeof key, "%s/key", dir) < (int)sizeof key && access(key, F_OK) != 0;
		ps.for_passwd = 1;
	}
	int rc = open_store(&h, fresh ? HISTORY_OPEN_CREATE : 0, &ps);
	if (rc == HISTORY_E_NOKEY && strcmp(sub, "list") == 0) {
		if (json)
			puts("[]");
		else
			fprintf(stderr, "no conversations yet\n");
		return EXIT_OK;
	}
	if (rc != HISTORY_OK)
		return exit_for(rc);
	int st;
	if (strcmp(sub, "list") == 0)
		st = do_list(h, json);
	else if (strcmp(sub, "show") == 0)
		st = do_show(h, arg, all);
	else if (strcmp(sub, "search") == 0)
		st = do_search(h, arg, all);
	else if (strcmp(sub, "export") == 0)
		st = do_export(h, arg, fmt, all);
	else if (strcmp(sub, "rm") == 0)
		st = do_rm(h, arg);
	else if (strcmp(sub, "repair") == 0)
		st = do_repair(h, arg);
	else if (fresh)
		st = (fprintf(stderr, "created the history key %s\n",
			      history_has_passphrase(h) ? "with a passphrase" : "without a passphrase"),
		      EXIT_OK);
	else
		st = do_passwd(h, remove, &ps);
	history_close(h);
	return st;
}
