/*
 * test_sweep_run.c: `lejepa sweep` end to end on a generated image folder
 * with a tiny model: a grid of two runs of 4 steps, each a `lejepa run`
 * (trainer, a loader and, when built, the evaluator as processes). Checks
 * the exit status, the run directories SWEEP-001/-002 with their own
 * lambda in config.ini and train lines in metrics.jsonl, plan.json's exit
 * statuses, the selection report, and that `--report` rebuilds it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "json.h"
#include "test_imgdir.h"
#include "test_train_util.h"
#include "testing.h"
#include "util.h"

#define SWEEP_WAIT_S 100.0      /* two tiny runs, one after the other */

static char *tmp;

static char *read_in(const char *rel)
{
    char path[4400], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    char *s = util_read_file(path, NULL, err);
    return s ? s : xstrdup("");
}

static void count_line(const struct json *j, void *ctx)
{
    (void)j;
    (*(int *)ctx)++;
}

static void test_grid_of_two(void)
{
    static char sets[4][4400], data[4400];
    char *argv[96];
    int n = 0;
    snprintf(data, sizeof data, "%s/data", tmp);
    imgdir_make(data, 2, 16, 4, 20, 20, 42);
    argv[n++] = xstrdup(testing_program("tools/lejepa"));
    argv[n++] = "sweep";
    argv[n++] = "--config";
    static char cfg[4400];
    snprintf(cfg, sizeof cfg, "%s/configs/fashion-mnist.ini", getenv("LEJEPA_SOURCE_ROOT"));
    argv[n++] = cfg;
    for (int i = 0; train_tiny_config[i]; i++) {
        argv[n++] = "--set";
        argv[n++] = (char *)train_tiny_config[i];
    }
    snprintf(sets[0], sizeof sets[0], "run.dir=%s/runs", tmp);
    snprintf(sets[1], sizeof sets[1], "run.endpoint=ipc://%s/w", tmp);
    snprintf(sets[2], sizeof sets[2], "run.broadcast=ipc://%s/b", tmp);
    for (int i = 0; i < 3; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    const char *rest[] = {"--grid", "loss.lambda=0.02,0.1", "--steps", "4", "--name", "G",
                          "--data", data, "--loaders", "1", "--workers", "1",
                          "--no-monitor", NULL};
    for (int i = 0; rest[i]; i++)
        argv[n++] = (char *)rest[i];
    argv[n] = NULL;
    char out_path[4400];
    snprintf(out_path, sizeof out_path, "%s/sweep.out", tmp);
    int status = testing_wait_exit(testing_spawn(out_path, true, argv), SWEEP_WAIT_S);
    char *out = read_in("sweep.out");
    if (status != 0)
        fprintf(stderr, "sweep output:\n%s\n", out);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "[sweep] run 2/2: G-002"));

    const char *lambda[2] = {"lambda = 0.02", "lambda = 0.1"};
    for (int r = 0; r < 2; r++) {
        char rel[64], path[4400];
        snprintf(rel, sizeof rel, "runs/G-%03d/config.ini", r + 1);
        char *ini = read_in(rel);
        CU_ASSERT_PTR_NOT_NULL(strstr(ini, lambda[r]));
        free(ini);
        snprintf(path, sizeof path, "%s/runs/G-%03d/metrics.jsonl", tmp, r + 1);
        int lines = 0;
        metrics_each(path, "train", count_line, &lines);
        CU_ASSERT(lines >= 1);
    }
    char *plan = read_in("runs/G/plan.json");
    CU_ASSERT_PTR_NOT_NULL(strstr(plan, "\"name\": \"G-002\", \"sets\": [\"loss.lambda=0.1\"], "
                                        "\"status\": 0"));
    free(plan);
    char err[ERR_LEN];
    char *sel = read_in("runs/G/selection.json");
    struct json *j = json_parse(sel, strlen(sel), 8, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const struct json *runs = json_get(j, "runs");
    CU_ASSERT_FATAL(runs && runs->type == JSON_ARRAY && runs->len == 2);
    for (const struct json *s = runs->child; s; s = s->next) {
        const struct json *loss = json_get(s, "loss");
        CU_ASSERT(loss && loss->type == JSON_NUMBER && isfinite(loss->number));
        const struct json *diff = json_get(s, "differences");
        CU_ASSERT(diff && diff->type == JSON_STRING &&
                  strncmp(diff->string, "loss.lambda=", 12) == 0);
    }
    json_free(j);
    free(sel);

    /* --report rebuilds the same report from the directories */
    char sel_path[4400], args[4600], rep[8192];
    snprintf(sel_path, sizeof sel_path, "%s/runs/G/selection.json", tmp);
    CU_ASSERT_EQUAL(unlink(sel_path), 0);
    snprintf(args, sizeof args, "sweep --report %s/runs/G", tmp);
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa", args, rep, sizeof rep), 0);
    CU_ASSERT_EQUAL(access(sel_path, R_OK), 0);
    free(out);
    free(argv[0]);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"a grid of two runs", test_grid_of_two},
        {NULL, NULL},
    };
    if (VIPS_INIT("test_sweep_run") != 0)
        return 1;
    tmp = testing_tmpdir();
    int rc = testing_run("sweep_run", cases);
    if (!getenv("LEJEPA_KEEP_TMP"))
        testing_rmtree(tmp);
    else
        fprintf(stderr, "kept %s\n", tmp);
    free(tmp);
    return rc;
}
