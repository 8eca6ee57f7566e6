/*
 * lejepa_quiet.h: which lines of the children of `lejepa run` reach the
 * terminal when it is quiet (the default; -v shows every line). The log
 * files get every line whatever this says; this only reads a line's text,
 * it never sees which child wrote it.
 */
#ifndef LEJEPA_QUIET_H
#define LEJEPA_QUIET_H

#include <stdbool.h>
#include <stddef.h>

/* true when line (len bytes, no newline, not NUL-terminated) is one a
 * person watching the run needs: progress, results or trouble. */
bool run_line_shown(const char *line, size_t len);

#endif
