/*
 * sweep_report.h: the selection report of a sweep (the paper's label-free
 * model selection, §6.2, Eq. 8): per run the config keys that differ
 * between the runs, the final training loss and its terms, the scaled loss
 * loss / lambda^alpha, the online probe and the frozen evaluators' last
 * results; across runs Spearman's rho between each label-free criterion
 * and linear_top1, and whether the criterion's pick (lowest) is the
 * linear probe's (highest). Read from the runs' config.ini and
 * metrics.jsonl only, so it can be rebuilt from finished runs; written as
 * selection.json and selection.html (sweep_html.c). It trains nothing.
 */
#ifndef LEJEPA_SWEEP_REPORT_H
#define LEJEPA_SWEEP_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* The paper's alignment coefficient: rho(loss / lambda^alpha, accuracy)
 * peaks near 0.4 across its datasets and models (Fig. 11, Eq. 8). */
#define SWEEP_DEFAULT_ALPHA 0.4
/* The final loss is the mean over this last fraction of the logged
 * training steps (at least one record). */
#define SWEEP_FINAL_FRACTION 0.1
#define SWEEP_DIFF_LEN 1024

struct sweep_summary {
    char name[CONFIG_STR_LEN];
    char dir[4096];
    bool has_config, has_metrics;
    struct config cfg;              /* its config.ini (valid if has_config) */
    char diff[SWEEP_DIFF_LEN];      /* "key=value key=value": keys that differ */
    long train_records;             /* source=train records with a loss */
    long window;                    /* of them, the last ones averaged */
    uint64_t last_step;
    double lambda;                  /* loss.lambda; NaN without config */
    double loss, inv, sigreg;       /* means over the window; NaN: none */
    double scaled_loss;             /* loss / lambda^alpha; NaN if lambda <= 0 */
    double probe_acc_val, knn_top1, linear_top1;  /* last value; NaN: none */
};

struct sweep_report {
    double alpha;
    int n;
    struct sweep_summary *runs;     /* (n), malloc'd: sweep_report_free */
    int n_corr;                     /* runs with a loss and a linear_top1 */
    double rho_loss, rho_scaled;    /* Spearman vs linear_top1; NaN: undefined */
    int pick_loss, pick_scaled;     /* lowest criterion; -1: none */
    int pick_linear;                /* highest linear_top1; -1: none */
};

/* Reads one run directory (config.ini and metrics.jsonl; either may be
 * missing, which leaves its values NaN) into s. A malformed metrics line
 * is skipped. -1 with err only when a present file cannot be read or the
 * config does not load. */
int sweep_summary_read(struct sweep_summary *s, const char *name, const char *dir,
                       double alpha, char *err);

/* Reads the n runs (names[i] in dirs[i]), fills the differences, the
 * correlations and the picks. -1 with err as sweep_summary_read. */
int sweep_report_build(struct sweep_report *r, const char *const *names,
                       const char *const *dirs, int n, double alpha, char *err);
void sweep_report_free(struct sweep_report *r);

/* selection.json: {"kind": "lejepa-sweep-selection", "version": 1, ...}. */
void sweep_report_json(FILE *out, const struct sweep_report *r, const char *sweep);

/* selection.html: one self-contained page (inline CSS and SVG; no script,
 * no external resources) in the dashboard's style (sweep_html.c). */
void sweep_report_html(FILE *out, const struct sweep_report *r, const char *sweep);

/* Writes dir/selection.json and dir/selection.html atomically. */
int sweep_report_write(const struct sweep_report *r, const char *dir, const char *sweep,
                       char *err);

#endif
