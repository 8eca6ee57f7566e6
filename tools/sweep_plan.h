/*
 * sweep_plan.h: what `lejepa sweep` runs: a list of runs, each a list of
 * "section.key=value" assignments applied (as --set) on top of the sweep's
 * base config. The list comes from a grid (--grid, repeatable: the product
 * of the axes) or from a file (--list: one run per line). Every key and
 * value is checked against the config key table (config_set, then
 * config_validate on the whole run config) before anything trains, so a
 * typo fails at once and names the key. Nothing here starts processes or
 * writes files but the plan (sweep_plan_write).
 */
#ifndef LEJEPA_SWEEP_PLAN_H
#define LEJEPA_SWEEP_PLAN_H

#include <stdbool.h>

#include "config.h"

#define SWEEP_MAX_AXES 16       /* --grid flags */
#define SWEEP_MAX_VALUES 64     /* values of one axis */
#define SWEEP_MAX_RUNS 999      /* run names end in -001 .. -999 */
#define SWEEP_MAX_SETS 64       /* assignments of one run */
#define SWEEP_SET_LEN 256       /* one "section.key=value" */

/* One --grid axis: a key and its values, in the order given. */
struct sweep_axis {
    char key[128];              /* "section.key" */
    int n;
    char values[SWEEP_MAX_VALUES][CONFIG_STR_LEN];
};

struct sweep_run {
    int n;
    char sets[SWEEP_MAX_SETS][SWEEP_SET_LEN];
};

struct sweep_plan {
    struct sweep_run *runs;     /* (n_runs), malloc'd: sweep_plan_free */
    int n_runs;
};

/* Parses one --grid "section.key=v1,v2,..." into axis. Values of list-typed
 * keys (e.g. model.widths) contain commas: theirs are separated by ';'.
 * The key must be in the config table and not run.name (the sweep names
 * its runs); each value must parse as that key's (config_set). -1 with
 * err naming the key. */
int sweep_axis_parse(struct sweep_axis *axis, const char *spec, char *err);

/* The product of the axes: one run per combination, the first axis
 * varying slowest and the last fastest (nested loops in the order the
 * axes were given). -1 with err when there would be more than
 * SWEEP_MAX_RUNS runs. */
int sweep_plan_grid(struct sweep_plan *p, const struct sweep_axis *axes, int n_axes,
                    char *err);

/* One run per non-blank line of text that is not a '#' comment: the line's
 * assignments separated by spaces, each optionally after "--set"
 * ("optim.lr=1e-3 loss.lambda=0.02" or "--set optim.lr=1e-3 ..."). origin
 * names the text in messages ("FILE:LINE: ..."). */
int sweep_plan_list(struct sweep_plan *p, const char *text, const char *origin,
                    char *err);

/* Checks every run: base plus its assignments must set known keys to valid
 * values and pass config_validate. -1 with err "run N (SETS): reason". */
int sweep_plan_check(const struct sweep_plan *p, const struct config *base, char *err);

void sweep_plan_free(struct sweep_plan *p);

#endif
