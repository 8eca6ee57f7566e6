/*
 * test_mpi_train.c: lejepa-train under mpirun (trainer/train_dist.h) with
 * real loaders on a generated ImageFolder: R = 2 and 3 ranks train the
 * same steps as one process (losses per step, synchronised BatchNorm),
 * with loaders spread over the ranks by rank 0; a checkpoint of 2 ranks
 * resumes under 1 and continues the one-process run; a rank killed
 * mid-run ends the job, and the last checkpoint resumes under 2 ranks;
 * decode failures seen by one rank's loader are excluded on every rank,
 * so the epochs stay the one process's. Each run's trainer is mpirun
 * itself, started through a small script (mpi-R) in the case's directory;
 * one OpenMP thread per rank. Registered only when meson found MPI.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_pipeline_util.h"

#define STEPS "10"
#define LOSS_RTOL 1e-4

/* The case's trainer becomes mpirun with `ranks` ranks (1: the plain
 * program). */
static void use_ranks(struct env *e, int ranks)
{
    const char *root = getenv("LEJEPA_BUILD_ROOT");
    CU_ASSERT_FATAL(root != NULL);
    if (ranks == 1) {
        snprintf(e->trainer, sizeof e->trainer, "%s/trainer/lejepa-train", root);
        return;
    }
    char rel[32], text[5000];
    snprintf(rel, sizeof rel, "mpi-%d", ranks);
    snprintf(text, sizeof text,
             "#!/bin/sh\n"
             "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1\n"
             "export OMP_NUM_THREADS=1\n"
             "exec mpirun -n %d --oversubscribe --bind-to none "
             "%s/trainer/lejepa-train \"$@\"\n",
             ranks, root);
    testing_put_file(e->dir, rel, text, strlen(text));
    snprintf(e->trainer, sizeof e->trainer, "%s/%s", e->dir, rel);
    CU_ASSERT_FATAL(chmod(e->trainer, 0755) == 0);
}

/* Snapshots (rank 0's alone) every 4 steps: they pause training, never
 * change it. */
static const char *const sync_args[] = {"--steps", STEPS, "--set", "model.sync_bn=true",
                                        "--set", "eval.every=4", NULL};

/* Losses of a and b agree step for step from step `from` (a's lines
 * [ia, ia + n) against b's [ib, ib + n)). */
static void same_losses(const struct line *a, int ia, const struct line *b, int ib, int n)
{
    for (int i = 0; i < n; i++) {
        const struct line *x = &a[ia + i], *y = &b[ib + i];
        CU_ASSERT_EQUAL(x->step, y->step);
        CU_ASSERT(fabs(x->loss - y->loss) <= LOSS_RTOL * fabs(y->loss));
        if (fabs(x->loss - y->loss) > LOSS_RTOL * fabs(y->loss))
            fprintf(stderr, "step %llu: loss %.8f vs %.8f\n", (unsigned long long)x->step,
                    x->loss, y->loss);
    }
}

static struct line one[MAX_LINES], many[MAX_LINES];

/* A run's output on stderr, for a failed case. */
static void show(const struct env *e, const char *out)
{
    char *text = read_text(e, out);
    fprintf(stderr, "---- %s ----\n%s\n", out, text);
    free(text);
}

static void test_ranks_equal_one(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 16, 4, 3);
    use_ranks(e, 1);
    int n1 = pipe_run(e, "one", data, 1, sync_args, NULL, one);
    CU_ASSERT_EQUAL_FATAL(n1, 10);
    for (int r = 2; r <= 3; r++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", r);
        use_ranks(e, r);
        int n = pipe_run(e, name, data, r, sync_args, NULL, many);
        CU_ASSERT_EQUAL(n, 10);
        same_losses(many, 0, one, 0, n < n1 ? n : n1);
        char out[32];
        snprintf(out, sizeof out, "%s.out", name);
        /* every rank trained, and rank 0 sent loaders to the others */
        CU_ASSERT(pipe_count_text(e, out, "done at step 10 of 10") == r);
        CU_ASSERT(pipe_count_text(e, out, "goes to the rank at") >= r - 1);
        CU_ASSERT(pipe_count_text(e, out, "snapshot 8: ") == 1);
    }
    free(data);
    pipe_case_end();
}

static void test_resume_other_ranks(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 16, 4, 5);
    use_ranks(e, 1);
    int n1 = pipe_run(e, "one", data, 1, sync_args, NULL, one);
    CU_ASSERT_EQUAL_FATAL(n1, 10);
    static const char *const ckpt_args[] = {
        "--steps", STEPS, "--set", "model.sync_bn=true", "--set", "eval.every=-1",
        "--set", "run.ckpt_every=6", NULL};
    use_ranks(e, 2);
    int n2 = pipe_run(e, "two", data, 2, ckpt_args, NULL, many);
    CU_ASSERT_EQUAL_FATAL(n2, 10);
    /* step 6's checkpoint of the two ranks, resumed by one process: the
     * same steps 7..10 as the one process's own run */
    char resume[4300];
    snprintf(resume, sizeof resume, "%s/two/ckpt-6.safetensors", e->dir);
    const char *const resume_args[] = {"--resume", resume, NULL};
    use_ranks(e, 1);
    int n = pipe_run(e, "two", data, 1, resume_args, NULL, many);
    CU_ASSERT_EQUAL_FATAL(n, 14);
    same_losses(many, 10, one, 6, 4);
    free(data);
    pipe_case_end();
}

/* The trainer of run `name` (tracked), then once bound two loaders
 * NAME-loader0/1 (ld[0], ld[1]); returns once the run logged `lines`
 * steps. */
static pid_t start_with_loaders(const struct env *e, const char *name,
                                const char *const *args, const char *data, pid_t *ld,
                                int lines)
{
    pid_t tr = start_trainer(e, name, args);
    pipe_track(tr);
    char rel[64];
    snprintf(rel, sizeof rel, "%s/log", name);
    CU_ASSERT_FATAL(wait_text(e, rel, "work endpoint", 20));
    for (int i = 0; i < 2; i++) {
        char lname[64];
        snprintf(lname, sizeof lname, "%s-loader%d", name, i);
        ld[i] = pipe_start_loader(e, lname, data, NULL, NULL);
    }
    CU_ASSERT_FATAL(wait_lines(e, name, lines, 40));
    return tr;
}

/* The pid rank 1 logged ("rank 1 of 2 (pid N)") in the run's output. */
static pid_t rank1_pid(const struct env *e, const char *out)
{
    char *text = read_text(e, out);
    const char *p = strstr(text, "rank 1 of 2 (pid ");
    pid_t pid = p ? (pid_t)atol(p + strlen("rank 1 of 2 (pid ")) : 0;
    free(text);
    return pid;
}

static void test_rank_dies(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 16, 4, 9);
    use_ranks(e, 2);
    static const char *const args[] = {
        "--steps", "400", "--set", "eval.every=-1", "--set", "run.ckpt_every=3",
        "--set", "optim.warmup_epochs=0", NULL};
    pid_t ld[2];
    pid_t tr = start_with_loaders(e, "dies", args, data, ld, 8);
    pid_t victim = rank1_pid(e, "dies.out");
    CU_ASSERT_FATAL(victim > 0);
    CU_ASSERT_EQUAL(kill(victim, SIGKILL), 0);
    /* the job ends (not hangs) and says it failed */
    int code = testing_wait_exit(tr, 30);
    CU_ASSERT(code != 0 && code != -1);
    char *latest = read_text(e, "dies/latest");
    CU_ASSERT(strncmp(latest, "ckpt-", 5) == 0);
    free(latest);
    /* the last checkpoint resumes under two ranks and the run goes on */
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/dies", e->dir);
    const char *const resume_args[] = {"--resume", dir, "--steps", "30", NULL};
    pid_t tr2 = start_trainer(e, "dies", resume_args);
    pipe_track(tr2);
    int code2 = testing_wait_exit(tr2, RUN_TIMEOUT_S);
    CU_ASSERT_EQUAL(code2, 0);
    CU_ASSERT(pipe_count_text(e, "dies.out", "done at step 30 of 30") == 2);
    if (code2 != 0)
        show(e, "dies.out");
    for (int i = 0; i < 2; i++)
        pipe_stop_loader(ld[i]);
    free(data);
    pipe_case_end();
}

/* Rank 1's only loader dies mid-run; rank 0 still counts it there, so a
 * new loader would stay on rank 0 (the tie) and rank 1 would wait
 * forever; once the exchange has waited a few seconds rank 0 sends the
 * new loader to rank 1, and the run ends. */
static void test_loader_replaced(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 16, 4, 13);
    use_ranks(e, 2);
    static const char *const args[] = {"--steps", "60", "--set", "eval.every=-1", NULL};
    pid_t ld[3];
    pid_t tr = start_with_loaders(e, "rl", args, data, ld, 5);
    /* the loader rank 0 sent to rank 1 */
    int away = pipe_count_text(e, "rl.out", "loader rl-loader1 (pid") > 0 ? 1 : 0;
    CU_ASSERT_FATAL(pipe_count_text(e, "rl.out", "goes to the rank at") == 1);
    CU_ASSERT_EQUAL(kill(-ld[away], SIGKILL), 0);
    ld[2] = pipe_start_loader(e, "rl-loader2", data, NULL, NULL);
    int code = testing_wait_exit(tr, RUN_TIMEOUT_S);
    CU_ASSERT_EQUAL(code, 0);
    if (code != 0)
        show(e, "rl.out");
    CU_ASSERT(pipe_count_text(e, "rl.out", "a rank may have no loaders") >= 1);
    CU_ASSERT_EQUAL(pipe_count_text(e, "rl.out", "done at step 60 of 60"), 2);
    pipe_stop_loader(ld[1 - away]);
    pipe_stop_loader(ld[2]);
    free(data);
    pipe_case_end();
}

/* N of the "..., N samples excluded)" a run's trainer ends with; -1. */
static int excluded_at_end(const struct env *e, const char *out)
{
    char *text = read_text(e, out);
    const char *p = strstr(text, " samples excluded)");
    int n = -1;
    if (p) {
        while (p > text && p[-1] >= '0' && p[-1] <= '9')
            p--;
        n = atoi(p);
    }
    free(text);
    return n;
}

static void test_exclusions_shared(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 8, 2, 11);
    pipe_add_corrupt(data, 11);
    /* 24 good and 4 corrupt train files, batch 8: 3 steps per epoch once
     * the corrupt ones are out; 12 steps cross several epochs */
    static const char *const args[] = {"--steps", "12", "--set", "model.sync_bn=true",
                                       "--set", "eval.every=-1", "--set",
                                       "limits.max_excluded=0.5", NULL};
    use_ranks(e, 1);
    int n1 = pipe_run(e, "one", data, 1, args, NULL, one);
    if (n1 != 12)
        show(e, "one.out");
    CU_ASSERT_EQUAL_FATAL(n1, 12);
    use_ranks(e, 2);
    int n2 = pipe_run(e, "two", data, 2, args, NULL, many);
    if (n2 != 12)
        show(e, "two.out");
    CU_ASSERT_EQUAL_FATAL(n2, 12);
    same_losses(many, 0, one, 0, 12);
    /* both ranks end with the one process's exclusions */
    int excluded = excluded_at_end(e, "one.out");
    CU_ASSERT(excluded >= 3);
    char text[64];
    snprintf(text, sizeof text, " %d samples excluded)", excluded);
    CU_ASSERT_EQUAL(pipe_count_text(e, "two.out", text), 2);
    CU_ASSERT(pipe_count_text(e, "two.out", "excluded by other ranks") >= 1);
    free(data);
    pipe_case_end();
}

int main(int argc, char **argv)
{
    static const struct testing_case cases[] = {
        {"ranks_equal_one", test_ranks_equal_one},
        {"resume_other_ranks", test_resume_other_ranks},
        {"rank_dies", test_rank_dies},
        {"exclusions_shared", test_exclusions_shared},
        {"loader_replaced", test_loader_replaced},
        {NULL, NULL},
    };
    return pipe_main("mpi_train", cases, argc, argv);
}
