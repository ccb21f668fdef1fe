/*
 * termsafe.h - what ttychat prints outside curses cannot drive the terminal.
 *
 * Error lines quote model metadata (architecture, names, template errors),
 * file contents and command-line values; any of them may carry escape
 * sequences (ESC ] 52 sets the clipboard, ESC [ 2 J clears the screen).
 * termsafe_install() puts one filter in front of stderr, so that every
 * line written there, by us or by the C library (getopt, perror), goes
 * through text_visible() (tui/text.h), the sanitiser the transcript uses.
 *
 * Thread rules: call termsafe_install() once, first thing in main, before
 * any other thread exists.  stderr stays unbuffered.
 */
#ifndef TTYCHAT_TERMSAFE_H
#define TTYCHAT_TERMSAFE_H

#include <stdio.h>

/* Replaces stderr with the filtered stream.  0, or -1 (stderr unchanged). */
int termsafe_install(void);

/* The unfiltered stderr, for the few lines that are our own terminal
 * control (the download progress bar's "\r" and "ESC [ K"); stderr itself
 * before termsafe_install(). */
FILE *termsafe_raw_stderr(void);

#endif
