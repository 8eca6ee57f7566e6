/*
 * sweep_report.c: the numbers of the selection report (sweep_report.h):
 * reading each run's config.ini and metrics.jsonl, the keys that differ,
 * the final-window means, the correlations and the picks, and
 * selection.json. The page is sweep_html.c; nothing here trains or plots.
 */
#include "sweep_report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "sweep_stat.h"
#include "util.h"

struct train_rec {
    double step, loss, inv, sigreg;
    size_t order;
};

static int by_step(const void *a, const void *b)
{
    const struct train_rec *p = a, *q = b;
    if (p->step != q->step)
        return p->step < q->step ? -1 : 1;
    return (p->order > q->order) - (p->order < q->order);
}

static double number_of(const struct json *obj, const char *key)
{
    const struct json *v = json_get(obj, key);
    return v && v->type == JSON_NUMBER && isfinite(v->number) ? v->number : NAN;
}

/* Mean of the finite values of one field over recs[0..n); NaN when none. */
static double window_mean(const struct train_rec *recs, size_t n, size_t field)
{
    double sum = 0;
    long k = 0;
    for (size_t i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&recs[i] + field);
        if (isfinite(v)) {
            sum += v;
            k++;
        }
    }
    return k ? sum / (double)k : NAN;
}

static int read_metrics(struct sweep_summary *s, const char *path, char *err)
{
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text)
        return -1;
    struct train_rec *recs = NULL;
    size_t n = 0, cap = 0;
    for (char *line = text; *line;) {
        size_t ll = strcspn(line, "\n");
        char why[ERR_LEN];
        struct json *j = ll ? json_parse(line, ll, 8, why) : NULL;
        if (j && j->type == JSON_OBJECT) {
            const struct json *src = json_get(j, "source");
            double step = number_of(j, "step");
            double loss = number_of(j, "loss");
            bool train = src && src->type == JSON_STRING && strcmp(src->string, "train") == 0;
            if (train && isfinite(loss) && isfinite(step)) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 256;
                    recs = xrealloc(recs, cap * sizeof *recs);
                }
                recs[n] = (struct train_rec){step, loss, number_of(j, "inv"),
                                             number_of(j, "sigreg"), n};
                n++;
            }
            if (isfinite(step) && step > (double)s->last_step)
                s->last_step = (uint64_t)step;
            /* the last value in file order: what the trainer appended last */
            double v;
            if (isfinite(v = number_of(j, "probe_acc_val")))
                s->probe_acc_val = v;
            if (isfinite(v = number_of(j, "knn_top1")))
                s->knn_top1 = v;
            if (isfinite(v = number_of(j, "linear_top1")))
                s->linear_top1 = v;
        }
        json_free(j);
        line += ll + (line[ll] == '\n');
    }
    free(text);
    if (n > 0) {
        qsort(recs, n, sizeof *recs, by_step);
        size_t w = (size_t)ceil(SWEEP_FINAL_FRACTION * (double)n);
        if (w < 1)
            w = 1;
        const struct train_rec *tail = recs + (n - w);
        s->loss = window_mean(tail, w, offsetof(struct train_rec, loss));
        s->inv = window_mean(tail, w, offsetof(struct train_rec, inv));
        s->sigreg = window_mean(tail, w, offsetof(struct train_rec, sigreg));
        s->window = (long)w;
    }
    s->train_records = (long)n;
    free(recs);
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int sweep_summary_read(struct sweep_summary *s, const char *name, const char *dir,
                       double alpha, char *err)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->lambda = s->loss = s->inv = s->sigreg = s->scaled_loss = NAN;
    s->probe_acc_val = s->knn_top1 = s->linear_top1 = NAN;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.ini", dir);
    if (exists(path)) {
        config_defaults(&s->cfg);
        if (config_load_file(&s->cfg, path, err) != 0)
            return -1;
        s->has_config = true;
        s->lambda = s->cfg.loss.lambda;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (exists(path)) {
        if (read_metrics(s, path, err) != 0)
            return -1;
        s->has_metrics = true;
    }
    if (isfinite(s->loss) && s->lambda > 0)
        s->scaled_loss = s->loss / pow(s->lambda, alpha);
    return 0;
}

/* Keys whose values are not the same in every run that has a config. Not
 * run.name (always differs), nor optim.steps when every run had a time
 * budget (each run fixes its own count). */
static void fill_diffs(struct sweep_report *r)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    bool all_minutes = true;
    for (int i = 0; i < r->n; i++)
        if (r->runs[i].has_config && !(r->runs[i].cfg.optim.minutes > 0))
            all_minutes = false;
    for (size_t k = 0; k < count; k++) {
        const struct config_key *key = &keys[k];
        if (strcmp(key->section, "run") == 0 && strcmp(key->key, "name") == 0)
            continue;
        if (all_minutes && strcmp(key->section, "optim") == 0 &&
            strcmp(key->key, "steps") == 0)
            continue;
        char first[CONFIG_STR_LEN * 2] = "", text[CONFIG_STR_LEN * 2];
        bool seen = false, differs = false;
        for (int i = 0; i < r->n && !differs; i++) {
            if (!r->runs[i].has_config)
                continue;
            config_format_value(key, (const char *)&r->runs[i].cfg + key->offset,
                                text, sizeof text);
            if (!seen)
                memcpy(first, text, sizeof first);
            differs = seen && strcmp(first, text) != 0;
            seen = true;
        }
        if (!differs)
            continue;
        for (int i = 0; i < r->n; i++) {
            struct sweep_summary *s = &r->runs[i];
            if (!s->has_config)
                continue;
            config_format_value(key, (const char *)&s->cfg + key->offset, text,
                                sizeof text);
            size_t used = strlen(s->diff);
            snprintf(s->diff + used, sizeof s->diff - used, "%s%s.%s=%s",
                     used ? " " : "", key->section, key->key, text);
        }
    }
}

/* Spearman's rho of a criterion (offset into the summary) against
 * linear_top1 over the runs that have both. */
static double criterion_rho(const struct sweep_report *r, size_t field, int *n_used)
{
    double *x = xmalloc(2 * (size_t)(r->n ? r->n : 1) * sizeof *x), *y = x + r->n;
    size_t m = 0;
    for (int i = 0; i < r->n; i++) {
        double c = *(const double *)((const char *)&r->runs[i] + field);
        if (isfinite(c) && isfinite(r->runs[i].linear_top1)) {
            x[m] = c;
            y[m++] = r->runs[i].linear_top1;
        }
    }
    double rho = sweep_spearman(x, y, m);
    free(x);
    *n_used = (int)m;
    return rho;
}

/* Index of the lowest (sign = +1) or highest (sign = -1) finite value of a
 * field; the first run wins ties; -1 when none is finite. */
static int pick(const struct sweep_report *r, size_t field, double sign)
{
    int best = -1;
    for (int i = 0; i < r->n; i++) {
        double v = sign * *(const double *)((const char *)&r->runs[i] + field);
        if (isfinite(v) &&
            (best < 0 || v < sign * *(const double *)((const char *)&r->runs[best] + field)))
            best = i;
    }
    return best;
}

int sweep_report_build(struct sweep_report *r, const char *const *names,
                       const char *const *dirs, int n, double alpha, char *err)
{
    memset(r, 0, sizeof *r);
    r->alpha = alpha;
    r->n = n;
    r->runs = xcalloc((size_t)(n ? n : 1), sizeof *r->runs);
    for (int i = 0; i < n; i++)
        if (sweep_summary_read(&r->runs[i], names[i], dirs[i], alpha, err) != 0) {
            sweep_report_free(r);
            return -1;
        }
    fill_diffs(r);
    int n_scaled;
    r->rho_loss = criterion_rho(r, offsetof(struct sweep_summary, loss), &r->n_corr);
    r->rho_scaled = criterion_rho(r, offsetof(struct sweep_summary, scaled_loss),
                                  &n_scaled);
    r->pick_loss = pick(r, offsetof(struct sweep_summary, loss), 1.0);
    r->pick_scaled = pick(r, offsetof(struct sweep_summary, scaled_loss), 1.0);
    r->pick_linear = pick(r, offsetof(struct sweep_summary, linear_top1), -1.0);
    return 0;
}

void sweep_report_free(struct sweep_report *r)
{
    free(r->runs);
    r->runs = NULL;
    r->n = 0;
}

static void json_number(FILE *out, double v)
{
    /* the shortest of %.15g / %.17g that reads back exactly */
    char buf[32];
    snprintf(buf, sizeof buf, "%.15g", v);
    if (isfinite(v) && strtod(buf, NULL) == v)
        fputs(buf, out);
    else if (isfinite(v))
        fprintf(out, "%.17g", v);
    else
        fputs("null", out);
}

static void json_pick(FILE *out, const struct sweep_report *r, int i)
{
    if (i < 0)
        fputs("null", out);
    else
        json_write_string(out, r->runs[i].name);
}

void sweep_report_json(FILE *out, const struct sweep_report *r, const char *sweep)
{
    fputs("{\"kind\": \"lejepa-sweep-selection\", \"version\": 1, \"sweep\": ", out);
    json_write_string(out, sweep);
    fputs(", \"alpha\": ", out);
    json_number(out, r->alpha);
    fprintf(out, ", \"final_fraction\": %g,\n \"runs\": [", SWEEP_FINAL_FRACTION);
    for (int i = 0; i < r->n; i++) {
        const struct sweep_summary *s = &r->runs[i];
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", out);
        json_write_string(out, s->name);
        fputs(", \"dir\": ", out);
        json_write_string(out, s->dir);
        fputs(", \"differences\": ", out);
        json_write_string(out, s->diff);
        fprintf(out, ", \"has_config\": %s, \"has_metrics\": %s, \"train_records\": %ld, "
                "\"window\": %ld, \"last_step\": %llu",
                s->has_config ? "true" : "false", s->has_metrics ? "true" : "false",
                s->train_records, s->window, (unsigned long long)s->last_step);
        const struct {
            const char *name;
            double v;
        } vals[] = {
            {"lambda", s->lambda}, {"loss", s->loss}, {"scaled_loss", s->scaled_loss},
            {"inv", s->inv}, {"sigreg", s->sigreg}, {"probe_acc_val", s->probe_acc_val},
            {"knn_top1", s->knn_top1}, {"linear_top1", s->linear_top1},
        };
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            fprintf(out, ", \"%s\": ", vals[k].name);
            json_number(out, vals[k].v);
        }
        fputs("}", out);
    }
    fprintf(out, "\n ],\n \"spearman\": {\"n\": %d, \"loss_vs_linear_top1\": ", r->n_corr);
    json_number(out, r->rho_loss);
    fputs(", \"scaled_loss_vs_linear_top1\": ", out);
    json_number(out, r->rho_scaled);
    fputs("},\n \"chosen\": {\"by_loss\": ", out);
    json_pick(out, r, r->pick_loss);
    fputs(", \"by_scaled_loss\": ", out);
    json_pick(out, r, r->pick_scaled);
    fputs(", \"by_linear_top1\": ", out);
    json_pick(out, r, r->pick_linear);
    const bool known = r->pick_linear >= 0;
    fprintf(out, ", \"loss_agrees\": %s, \"scaled_loss_agrees\": %s}}\n",
            !known ? "null" : r->pick_loss == r->pick_linear ? "true" : "false",
            !known ? "null" : r->pick_scaled == r->pick_linear ? "true" : "false");
}

struct report_job {
    const struct sweep_report *r;
    const char *sweep;
    bool html;
};

static void render_report(FILE *out, void *ctx)
{
    const struct report_job *j = ctx;
    if (j->html)
        sweep_report_html(out, j->r, j->sweep);
    else
        sweep_report_json(out, j->r, j->sweep);
}

static int write_one(const char *dir, const char *file, const struct sweep_report *r,
                     const char *sweep, bool html, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct report_job j = {r, sweep, html};
    return util_write_rendered(path, render_report, &j, err);
}

int sweep_report_write(const struct sweep_report *r, const char *dir, const char *sweep,
                       char *err)
{
    if (write_one(dir, "selection.json", r, sweep, false, err) != 0)
        return -1;
    return write_one(dir, "selection.html", r, sweep, true, err);
}
