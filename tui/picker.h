/*
 * picker.h - the model picker (F2, /model): every model of models.h with
 * its size, quant and whether it fits in memory, the selected one's
 * details below the list, and the progress of a load started from it.
 *
 * An overlay (overlay.h).  Up/Down (k/j) choose; Enter asks the holder to
 * load the selection (PICKER_LOAD); Esc or Ctrl-C stop a load in progress
 * (PICKER_STOP), else close, as do q and F2.  The holder loads the model
 * (the engine is not the picker's) and closes the box when the load ends.
 * UI thread only.
 */
#ifndef TTYCHAT_TUI_PICKER_H
#define TTYCHAT_TUI_PICKER_H

#include <stddef.h>
#include <stdint.h>

#include "models.h"
#include "overlay.h"
#include "sidebar.h"

enum {
	PICKER_LOAD = OV_ACTION, /* load picker_selected() */
	PICKER_STOP,             /* stop the load in progress */
};

extern const struct overlay_class picker_class;

/* Lists the models (models_scan() with N_CTX and AVAIL, the memory to
 * compare with) and selects CURRENT, the path of the model in use.  ST
 * (the loading phase, progress and available memory) and CURRENT are read
 * at each draw: they must outlive the box.  NULL with a message in ERR
 * when nothing could be listed. */
struct overlay *picker_open(uint32_t n_ctx, uint64_t avail, const struct tui_status *st, const char *current,
			    char *err, size_t errlen);

/* The selected model, or NULL (also when OV is not a picker). */
const struct model_item *picker_selected(const struct overlay *ov);

#endif
