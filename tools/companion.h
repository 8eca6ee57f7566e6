/*
 * companion.h: the benchmarks' PyTorch companions (tools/bench_*.py). A
 * benchmark runs its script with /usr/bin/python3 in the same invocation, on
 * the same machine, and reads the one JSON object the script prints on its
 * first stdout line. Nothing here times anything or knows a benchmark.
 */
#ifndef LEJEPA_COMPANION_H
#define LEJEPA_COMPANION_H

#include <stddef.h>

/* One value wanted from the companion's JSON object: a number into *number,
 * or (number NULL) a string into text (text_len bytes, truncated). */
struct companion_field {
    const char *key;
    double *number;
    char *text;
    size_t text_len;
};

/* Runs `/usr/bin/python3 'SCRIPT' ARGS` (ARGS already quoted for the
 * shell) and fills the n fields from the first line it prints. 0, or -1 with
 * err naming the script and what went wrong (no python, exit status, not
 * JSON, a key missing or of another type); the fields are then untouched. */
int companion_run(const char *script, const char *args,
                  const struct companion_field *fields, int n, char *err);

#endif
