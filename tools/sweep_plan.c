/*
 * sweep_plan.c: the runs of a sweep from --grid axes or a --list file, and
 * their check against the config key table (sweep_plan.h). It must not
 * know how a run is started or what its results mean.
 */
#include "sweep_plan.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static bool is_list_type(const struct config_key *k)
{
    return k->type == CONFIG_INT_LIST || k->type == CONFIG_FLOAT_LIST;
}

/* The key row of "section.key" (text[0..n)), or NULL. */
static const struct config_key *find_key(const char *text, size_t n)
{
    char name[128];
    if (n >= sizeof name)
        return NULL;
    memcpy(name, text, n);
    name[n] = '\0';
    char *dot = strchr(name, '.');
    if (!dot)
        return NULL;
    *dot = '\0';
    return config_find_key(name, dot + 1);
}

int sweep_axis_parse(struct sweep_axis *axis, const char *spec, char *err)
{
    memset(axis, 0, sizeof *axis);
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return errf(err, "--grid %.80s: expected section.key=v1,v2,... "
                    "(e.g. loss.lambda=0.02,0.05)", spec);
    size_t klen = (size_t)(eq - spec);
    if (klen >= sizeof axis->key)
        return errf(err, "--grid %.80s...: key name too long", spec);
    memcpy(axis->key, spec, klen);
    axis->key[klen] = '\0';
    const struct config_key *k = find_key(spec, klen);
    if (!k) {
        /* config_set says why (unknown section or key, nearest names) */
        struct config scratch;
        config_defaults(&scratch);
        char why[ERR_LEN];
        char probe[200];
        snprintf(probe, sizeof probe, "%s=0", axis->key);
        if (config_set(&scratch, probe, why) == 0)
            snprintf(why, sizeof why, "unknown config key");
        return errf(err, "--grid %s: %s", axis->key, why);
    }
    if (strcmp(k->section, "run") == 0 && strcmp(k->key, "name") == 0)
        return errf(err, "--grid run.name: the sweep names its runs "
                    "(NAME-001, ...); give the sweep's name with --name");
    const char sep = is_list_type(k) ? ';' : ',';
    struct config scratch;
    config_defaults(&scratch);
    for (const char *s = eq + 1;;) {
        size_t n = strcspn(s, (char[]){sep, '\0'});
        if (axis->n == SWEEP_MAX_VALUES)
            return errf(err, "--grid %s: more than %d values", axis->key,
                        SWEEP_MAX_VALUES);
        if (n == 0 || n >= CONFIG_STR_LEN)
            return errf(err, "--grid %s: %s value '%.*s' (values are separated "
                        "by '%c'%s)", axis->key, n ? "too long a" : "an empty",
                        (int)(n > 40 ? 40 : n), s, sep,
                        sep == ';' ? ": this key's values are lists" : "");
        memcpy(axis->values[axis->n], s, n);
        axis->values[axis->n][n] = '\0';
        char set[SWEEP_SET_LEN], why[ERR_LEN];
        snprintf(set, sizeof set, "%s=%s", axis->key, axis->values[axis->n]);
        if (config_set(&scratch, set, why) != 0)
            return errf(err, "--grid %s: %s", axis->key, why);
        axis->n++;
        if (!s[n])
            break;
        s += n + 1;
    }
    return 0;
}

int sweep_plan_grid(struct sweep_plan *p, const struct sweep_axis *axes, int n_axes,
                    char *err)
{
    memset(p, 0, sizeof *p);
    if (n_axes < 1 || n_axes > SWEEP_MAX_AXES)
        return errf(err, "sweep: %d --grid axes (1 to %d)", n_axes, SWEEP_MAX_AXES);
    long total = 1;
    for (int a = 0; a < n_axes; a++) {
        for (int b = 0; b < a; b++)
            if (strcmp(axes[a].key, axes[b].key) == 0)
                return errf(err, "--grid %s: given twice (one --grid per key)",
                            axes[a].key);
        total *= axes[a].n;
        if (total > SWEEP_MAX_RUNS)
            return errf(err, "sweep: the grid has more than %d runs", SWEEP_MAX_RUNS);
    }
    p->runs = xcalloc((size_t)total, sizeof *p->runs);
    p->n_runs = (int)total;
    for (long r = 0; r < total; r++) {
        /* mixed-radix digits of r, the last axis the fastest */
        long rest = r;
        struct sweep_run *run = &p->runs[r];
        run->n = n_axes;
        for (int a = n_axes - 1; a >= 0; a--) {
            int v = (int)(rest % axes[a].n);
            rest /= axes[a].n;
            snprintf(run->sets[a], SWEEP_SET_LEN, "%s=%s", axes[a].key,
                     axes[a].values[v]);
        }
    }
    return 0;
}

int sweep_plan_list(struct sweep_plan *p, const char *text, const char *origin,
                    char *err)
{
    memset(p, 0, sizeof *p);
    int cap = 0, line_no = 0;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        line_no++;
        struct sweep_run run;
        run.n = 0;
        for (size_t i = 0; i < len;) {
            while (i < len && isspace((unsigned char)line[i]))
                i++;
            if (i == len || line[i] == '#')
                break;
            size_t j = i;
            while (j < len && !isspace((unsigned char)line[j]))
                j++;
            bool flag = j - i == 5 && strncmp(line + i, "--set", 5) == 0;
            if (!flag) {
                if (run.n == SWEEP_MAX_SETS || j - i >= SWEEP_SET_LEN) {
                    sweep_plan_free(p);
                    return errf(err, "%s:%d: %s", origin, line_no,
                                run.n == SWEEP_MAX_SETS ? "too many assignments"
                                                        : "assignment too long");
                }
                memcpy(run.sets[run.n], line + i, j - i);
                run.sets[run.n++][j - i] = '\0';
            }
            i = j;
        }
        if (run.n > 0) {
            if (p->n_runs == SWEEP_MAX_RUNS) {
                sweep_plan_free(p);
                return errf(err, "%s:%d: more than %d runs", origin, line_no,
                            SWEEP_MAX_RUNS);
            }
            if (p->n_runs == cap) {
                cap = cap ? 2 * cap : 16;
                p->runs = xrealloc(p->runs, (size_t)cap * sizeof *p->runs);
            }
            p->runs[p->n_runs++] = run;
        }
        line += len + (line[len] == '\n');
    }
    if (p->n_runs == 0)
        return errf(err, "%s: no runs (one line of section.key=value "
                    "assignments per run)", origin);
    return 0;
}

int sweep_plan_check(const struct sweep_plan *p, const struct config *base, char *err)
{
    for (int r = 0; r < p->n_runs; r++) {
        const struct sweep_run *run = &p->runs[r];
        struct config c = *base;
        char why[ERR_LEN];
        for (int i = 0; i < run->n; i++) {
            const char *set = run->sets[i];
            const char *eq = strchr(set, '=');
            const struct config_key *k = eq ? find_key(set, (size_t)(eq - set)) : NULL;
            if (k && strcmp(k->section, "run") == 0 && strcmp(k->key, "name") == 0)
                return errf(err, "run %d: run.name: the sweep names its runs", r + 1);
            if (config_set(&c, set, why) != 0)
                return errf(err, "run %d: %s", r + 1, why);
        }
        if (config_validate(&c, why) != 0)
            return errf(err, "run %d (%s%s): %s", r + 1, run->n ? run->sets[0] : "",
                        run->n > 1 ? " ..." : "", why);
    }
    return 0;
}

void sweep_plan_free(struct sweep_plan *p)
{
    free(p->runs);
    p->runs = NULL;
    p->n_runs = 0;
}
