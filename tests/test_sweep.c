/*
 * test_sweep.c: `lejepa sweep`'s pieces without training: Spearman's rho
 * against SciPy (tests/fixtures/sweep/spearman.txt, tools/ref_spearman.py,
 * ties included), the grid's product and order and its key checks, the
 * --list format, and the selection report built from three run
 * directories written here (config.ini + metrics.jsonl) with numbers
 * worked out by hand.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "sweep_plan.h"
#include "sweep_report.h"
#include "sweep_stat.h"
#include "testing.h"
#include "util.h"

#define ALPHA 0.4

static void test_ranks_by_hand(void)
{
    const double x[] = {3, 1, 3, 2, 3};
    double r[5];
    sweep_ranks(x, 5, r);
    const double want[] = {4, 1, 4, 2, 4};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(r[i], want[i]);
    const double y[] = {10, 20, 30};
    const double z[] = {3, 2, 1};
    CU_ASSERT_DOUBLE_EQUAL(sweep_spearman(y, z, 3), -1.0, 1e-15);
    CU_ASSERT(isnan(sweep_spearman(y, z, 1)));
}

static void test_spearman_fixture(void)
{
    const char *path = testing_fixture("sweep/spearman.txt");
    char err[ERR_LEN];
    char *text = util_read_file(path, NULL, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    int cases = 0, ties = 0, nans = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line && *line != '#') {
            char *p = line, *end;
            long n = strtol(p, &end, 10);
            CU_ASSERT_FATAL(end != p && n > 0 && n < 1000);
            p = end;
            double want = strtod(p, &end);   /* "nan" reads as NaN */
            CU_ASSERT_FATAL(end != p);
            p = end;
            double *xy = xmalloc(2 * (size_t)n * sizeof *xy);
            for (long i = 0; i < 2 * n; i++) {
                xy[i] = strtod(p, &end);
                CU_ASSERT_FATAL(end != p);
                p = end;
            }
            for (long i = 0; i < n; i++)
                for (long j = 0; j < i; j++)
                    ties += xy[i] == xy[j] || xy[n + i] == xy[n + j];
            double got = sweep_spearman(xy, xy + n, (size_t)n);
            if (isnan(want)) {
                nans++;
                CU_ASSERT(isnan(got));
            } else {
                CU_ASSERT_DOUBLE_EQUAL(got, want, 1e-12);
            }
            free(xy);
            cases++;
        }
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(text);
    /* the fixture must hold what it is for */
    CU_ASSERT(cases >= 10);
    CU_ASSERT(ties > 0);
    CU_ASSERT(nans > 0);
}

static void test_grid_product_order(void)
{
    struct sweep_axis ax[2];
    struct sweep_plan p;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(sweep_axis_parse(&ax[0], "loss.lambda=0.1,0.2", err), 0);
    CU_ASSERT_EQUAL_FATAL(sweep_axis_parse(&ax[1], "optim.lr=1e-3,2e-3,3e-3", err), 0);
    CU_ASSERT_EQUAL_FATAL(sweep_plan_grid(&p, ax, 2, err), 0);
    CU_ASSERT_EQUAL_FATAL(p.n_runs, 6);
    const char *want[6][2] = {
        {"loss.lambda=0.1", "optim.lr=1e-3"}, {"loss.lambda=0.1", "optim.lr=2e-3"},
        {"loss.lambda=0.1", "optim.lr=3e-3"}, {"loss.lambda=0.2", "optim.lr=1e-3"},
        {"loss.lambda=0.2", "optim.lr=2e-3"}, {"loss.lambda=0.2", "optim.lr=3e-3"},
    };
    for (int r = 0; r < 6; r++) {
        CU_ASSERT_EQUAL(p.runs[r].n, 2);
        CU_ASSERT_STRING_EQUAL(p.runs[r].sets[0], want[r][0]);
        CU_ASSERT_STRING_EQUAL(p.runs[r].sets[1], want[r][1]);
    }
    struct config base;
    config_defaults(&base);
    CU_ASSERT_EQUAL(sweep_plan_check(&p, &base, err), 0);
    sweep_plan_free(&p);

    /* list-typed keys: values separated by ';' */
    CU_ASSERT_EQUAL_FATAL(sweep_axis_parse(&ax[0], "model.projector=64,32;128,16", err), 0);
    CU_ASSERT_EQUAL(ax[0].n, 2);
    CU_ASSERT_STRING_EQUAL(ax[0].values[1], "128,16");
}

static void test_grid_bad_keys(void)
{
    struct sweep_axis ax[2];
    struct sweep_plan p;
    char err[ERR_LEN];
    CU_ASSERT_NOT_EQUAL(sweep_axis_parse(&ax[0], "loss.lamda=0.1,0.2", err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "loss.lamda"));
    CU_ASSERT_NOT_EQUAL(sweep_axis_parse(&ax[0], "nosuch.lr=1", err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nosuch.lr"));
    CU_ASSERT_NOT_EQUAL(sweep_axis_parse(&ax[0], "loss.lambda=0.1,7", err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "lambda"));
    CU_ASSERT_NOT_EQUAL(sweep_axis_parse(&ax[0], "loss.lambda=0.1,,0.2", err), 0);
    CU_ASSERT_NOT_EQUAL(sweep_axis_parse(&ax[0], "run.name=a,b", err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "run.name"));
    CU_ASSERT_NOT_EQUAL(sweep_axis_parse(&ax[0], "loss.lambda", err), 0);
    CU_ASSERT_EQUAL_FATAL(sweep_axis_parse(&ax[0], "loss.lambda=0.1", err), 0);
    CU_ASSERT_EQUAL_FATAL(sweep_axis_parse(&ax[1], "loss.lambda=0.2", err), 0);
    CU_ASSERT_NOT_EQUAL(sweep_plan_grid(&p, ax, 2, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "loss.lambda"));
    /* a rule between keys fails on the run's whole config, naming the keys */
    struct config base;
    config_defaults(&base);
    CU_ASSERT_EQUAL_FATAL(sweep_axis_parse(&ax[0], "optim.batch=64,16", err), 0);
    CU_ASSERT_EQUAL_FATAL(sweep_plan_grid(&p, ax, 1, err), 0);
    CU_ASSERT_NOT_EQUAL(sweep_plan_check(&p, &base, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "run 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "optim.batch"));
    sweep_plan_free(&p);
}

static void test_list(void)
{
    struct sweep_plan p;
    char err[ERR_LEN];
    const char *text = "# lambda and lr\n"
                       "loss.lambda=0.02 optim.lr=1e-3\n"
                       "\n"
                       "   --set loss.lambda=0.1   --set optim.lr=2e-4  # a comment\n";
    CU_ASSERT_EQUAL_FATAL(sweep_plan_list(&p, text, "t.txt", err), 0);
    CU_ASSERT_EQUAL_FATAL(p.n_runs, 2);
    CU_ASSERT_EQUAL(p.runs[1].n, 2);
    CU_ASSERT_STRING_EQUAL(p.runs[1].sets[0], "loss.lambda=0.1");
    CU_ASSERT_STRING_EQUAL(p.runs[1].sets[1], "optim.lr=2e-4");
    struct config base;
    config_defaults(&base);
    CU_ASSERT_EQUAL(sweep_plan_check(&p, &base, err), 0);
    sweep_plan_free(&p);
    CU_ASSERT_EQUAL_FATAL(sweep_plan_list(&p, "optim.lr=1e-3\noptim.lrr=2\n", "t.txt",
                                          err), 0);
    CU_ASSERT_NOT_EQUAL(sweep_plan_check(&p, &base, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "run 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "lrr"));
    sweep_plan_free(&p);
    CU_ASSERT_NOT_EQUAL(sweep_plan_list(&p, "# nothing\n\n", "t.txt", err), 0);
}

/* One synthetic run: config.ini with lambda and lr, 20 train records whose
 * last two have the given loss / inv / sigreg, and evaluator results (an
 * older linear_top1 first, so "last" is tested). */
static void write_run(const char *dir, double lambda, const char *lr, const double *last_loss,
                      double inv, const double *last_sigreg, double probe, double knn,
                      double linear)
{
    char err[ERR_LEN], path[4200];
    CU_ASSERT_EQUAL_FATAL(util_mkdir_p(dir, err), 0);
    snprintf(path, sizeof path, "%s/config.ini", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "[loss]\nlambda = %g\n[optim]\nlr = %s\n", lambda, lr);
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int s = 1; s <= 20; s++) {
        double loss = s >= 19 ? last_loss[s - 19] : 5.0 - 0.1 * s;
        double sig = s >= 19 ? last_sigreg[s - 19] : 9.0;
        fprintf(f, "{\"time\": %d, \"step\": %d, \"epoch\": 0, \"source\": \"train\", "
                "\"loss\": %.17g, \"inv\": %.17g, \"sigreg\": %.17g, \"lr\": 0.001}\n",
                1000 + s, s, loss, s >= 19 ? inv : 3.0, sig);
        if (s == 10) {
            fprintf(f, "{\"time\": 1010.5, \"step\": 10, \"epoch\": 0, \"source\": "
                    "\"linear\", \"linear_top1\": 0.1}\n");
            fputs("not json\n", f);
        }
    }
    fprintf(f, "{\"time\": 1030, \"step\": 20, \"epoch\": 0, \"source\": \"eval\", "
            "\"probe_acc_val\": %.17g}\n", probe);
    fprintf(f, "{\"time\": 1031, \"step\": 20, \"epoch\": 0, \"source\": \"knn\", "
            "\"knn_top1\": %.17g}\n", knn);
    fprintf(f, "{\"time\": 1032, \"step\": 20, \"epoch\": 0, \"source\": \"linear\", "
            "\"linear_top1\": %.17g}\n", linear);
    fclose(f);
}

static double jnum(const struct json *o, const char *k)
{
    const struct json *v = json_get(o, k);
    CU_ASSERT_PTR_NOT_NULL(v);
    return v && v->type == JSON_NUMBER ? v->number : NAN;
}

static const char *jstr(const struct json *o, const char *k)
{
    const struct json *v = json_get(o, k);
    CU_ASSERT_PTR_NOT_NULL(v);
    return v && v->type == JSON_STRING ? v->string : "";
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Loss picks S-001, the scaled loss S-003, linear_top1 S-002; rho by hand:
 * loss ranks (1,2,3) vs linear ranks (1,3,2): 1 - 6*2/24 = 0.5; scaled
 * ranks (3,2,1): 1 - 6*6/24 = -0.5. */
static void test_report(void)
{
    char *tmp = testing_tmpdir(), err[ERR_LEN];
    char dirs[3][4200], sweep_dir[4200];
    const char *names[3] = {"S-001", "S-002", "S-003"};
    const double lambda[3] = {0.02, 0.05, 0.10};
    const char *lr[3] = {"1e-3", "1e-3", "5e-4"};
    const double loss[3][2] = {{0.50, 0.54}, {0.58, 0.62}, {0.71, 0.69}};
    const double sig[3][2] = {{1.2, 1.4}, {1.5, 1.5}, {2.0, 2.2}};
    const double inv[3] = {0.3, 0.25, 0.2};
    const double linear[3] = {0.80, 0.85, 0.83};
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", tmp, names[i]);
        write_run(dirs[i], lambda[i], lr[i], loss[i], inv[i], sig[i], 0.6 + 0.01 * i,
                  0.7 + 0.01 * i, linear[i]);
    }
    snprintf(sweep_dir, sizeof sweep_dir, "%s/S", tmp);
    CU_ASSERT_EQUAL_FATAL(util_mkdir_p(sweep_dir, err), 0);
    const char *dp[3] = {dirs[0], dirs[1], dirs[2]};
    struct sweep_report r;
    CU_ASSERT_EQUAL_FATAL(sweep_report_build(&r, names, dp, 3, ALPHA, err), 0);
    CU_ASSERT_EQUAL_FATAL(sweep_report_write(&r, sweep_dir, "S", err), 0);
    sweep_report_free(&r);

    char path[4300];
    snprintf(path, sizeof path, "%s/selection.json", sweep_dir);
    size_t len;
    char *text = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    struct json *j = json_parse(text, len, 8, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(jstr(j, "kind"), "lejepa-sweep-selection");
    CU_ASSERT_EQUAL(jnum(j, "version"), 1);
    const struct json *runs = json_get(j, "runs");
    CU_ASSERT_FATAL(runs && runs->type == JSON_ARRAY && runs->len == 3);
    int i = 0;
    for (const struct json *s = runs->child; s; s = s->next, i++) {
        double mean = 0.5 * (loss[i][0] + loss[i][1]);
        CU_ASSERT_STRING_EQUAL(jstr(s, "name"), names[i]);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "window"), 2, 0);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "train_records"), 20, 0);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "loss"), mean, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "scaled_loss"), mean / pow(lambda[i], ALPHA), 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "inv"), inv[i], 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "sigreg"), 0.5 * (sig[i][0] + sig[i][1]), 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "probe_acc_val"), 0.6 + 0.01 * i, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "knn_top1"), 0.7 + 0.01 * i, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "linear_top1"), linear[i], 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(jnum(s, "last_step"), 20, 0);
        const char *diff = jstr(s, "differences");
        char want[64];
        snprintf(want, sizeof want, "loss.lambda=%g", lambda[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(diff, want));
        CU_ASSERT_PTR_NOT_NULL(strstr(diff, "optim.lr="));
        CU_ASSERT_PTR_NULL(strstr(diff, "optim.batch"));
        CU_ASSERT_PTR_NULL(strstr(diff, "run.name"));
    }
    const struct json *sp = json_get(j, "spearman");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sp);
    CU_ASSERT_DOUBLE_EQUAL(jnum(sp, "n"), 3, 0);
    CU_ASSERT_DOUBLE_EQUAL(jnum(sp, "loss_vs_linear_top1"), 0.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(jnum(sp, "scaled_loss_vs_linear_top1"), -0.5, 1e-12);
    const struct json *ch = json_get(j, "chosen");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ch);
    CU_ASSERT_STRING_EQUAL(jstr(ch, "by_loss"), "S-001");
    CU_ASSERT_STRING_EQUAL(jstr(ch, "by_scaled_loss"), "S-003");
    CU_ASSERT_STRING_EQUAL(jstr(ch, "by_linear_top1"), "S-002");
    const struct json *agree = json_get(ch, "loss_agrees");
    CU_ASSERT(agree && agree->type == JSON_FALSE);
    json_free(j);
    free(text);

    snprintf(path, sizeof path, "%s/selection.html", sweep_dir);
    text = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(count(text, "<circle class=\"run\""), 3);
    for (int k = 0; k < 3; k++) {
        char want[64];
        snprintf(want, sizeof want, "data-run=\"%s\" data-linear=\"%.4g\"", names[k],
                 linear[k]);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "<tr class=\"best\" data-run=\"S-002\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "id=\"rho_loss\">0.5<"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "id=\"rho_scaled\">-0.5<"));
    /* self-contained: no script, no link, nothing fetched */
    CU_ASSERT_PTR_NULL(strstr(text, "<script"));
    CU_ASSERT_PTR_NULL(strstr(text, "href="));
    CU_ASSERT_PTR_NULL(strstr(text, "src="));
    CU_ASSERT_PTR_NULL(strstr(text, "url("));
    free(text);
    testing_rmtree(tmp);
    free(tmp);
}

/* A run without metrics (stopped sweep) is listed and left out of the
 * correlations and picks. */
static void test_report_missing_run(void)
{
    char *tmp = testing_tmpdir(), err[ERR_LEN], a[4200], b[4200];
    snprintf(a, sizeof a, "%s/M-001", tmp);
    snprintf(b, sizeof b, "%s/M-002", tmp);
    const double l[2] = {0.5, 0.5}, s[2] = {1, 1};
    write_run(a, 0.05, "1e-3", l, 0.2, s, 0.5, 0.5, 0.5);
    const char *names[2] = {"M-001", "M-002"}, *dirs[2] = {a, b};
    struct sweep_report r;
    CU_ASSERT_EQUAL_FATAL(sweep_report_build(&r, names, dirs, 2, ALPHA, err), 0);
    CU_ASSERT(!r.runs[1].has_metrics && !r.runs[1].has_config);
    CU_ASSERT(isnan(r.runs[1].loss));
    CU_ASSERT_EQUAL(r.n_corr, 1);
    CU_ASSERT(isnan(r.rho_loss));
    CU_ASSERT_EQUAL(r.pick_loss, 0);
    CU_ASSERT_EQUAL(r.pick_linear, 0);
    sweep_report_free(&r);
    testing_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"average ranks and rho by hand", test_ranks_by_hand},
        {"Spearman against SciPy (ties)", test_spearman_fixture},
        {"grid: product and order", test_grid_product_order},
        {"grid: bad keys and values are named", test_grid_bad_keys},
        {"list file", test_list},
        {"report from three run directories", test_report},
        {"report with a run that has no metrics", test_report_missing_run},
        {NULL, NULL},
    };
    return testing_run("sweep", cases);
}
