/*
 * help.h - the help box (F1, ?, /help): every key and command from the
 * tables of cmds.h, and the settings in force when it opened.
 *
 * An overlay (overlay.h): Up/Down (k/j), PgUp/PgDn and Space scroll; any
 * other key closes it.  No actions of its own.  UI thread only.
 */
#ifndef TTYCHAT_TUI_HELP_H
#define TTYCHAT_TUI_HELP_H

#include "overlay.h"

struct tui_settings;

/* The box, built from the tables and SET (copied), or NULL when out of
 * memory.  overlay_close() frees it. */
struct overlay *help_open(const struct tui_settings *set);

#endif
