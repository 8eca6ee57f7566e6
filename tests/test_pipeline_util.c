/*
 * test_pipeline_util.c: the generated dataset and the real loader processes
 * of test_pipeline.c (see test_pipeline_util.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vips/vips.h>

#include "test_pipeline_util.h"
#include "testing.h"
#include "util.h"

#define PIPE_MAX_PROCS 32

const char *const pipe_corrupt_paths[PIPE_N_CORRUPT] = {
    "train/disk/zz_truncated.png", "train/bars/zz_empty.png",
    "train/square/zz_junk.png", "train/disk/zz_text.jpg",
};

static const char *const class_names[PIPE_CLASSES] = {"disk", "bars", "square"};

/* Processes of the current case: loaders lead a group of their own. */
static struct {
    pid_t pid;
    int group;
} procs[PIPE_MAX_PROCS];
static int n_procs;
/* The case under way (static: a fatal assertion leaves the case's frame
 * by longjmp, and main still ends it). */
static struct env case_env;
static int case_open;

static void track(pid_t pid, int group)
{
    CU_ASSERT_FATAL(n_procs < PIPE_MAX_PROCS);
    procs[n_procs].pid = pid;
    procs[n_procs].group = group;
    n_procs++;
}

void pipe_track(pid_t pid)
{
    track(pid, 0);
}

/* One image of class c: shape at a seeded place, plus N(0, 12) noise. */
static void draw(uint8_t *px, int c, uint64_t *rng)
{
    int ox = (int)(testing_rand_uniform(rng) * 7), oy = (int)(testing_rand_uniform(rng) * 7);
    for (int y = 0; y < PIPE_SIDE; y++)
        for (int x = 0; x < PIPE_SIDE; x++) {
            double v;
            if (c == 0) {
                double dx = x - (6.5 + ox), dy = y - (6.5 + oy);
                v = dx * dx + dy * dy < 25 ? 230 : 30;
            } else if (c == 1) {
                v = ((y + oy) / 3) % 2 ? 200 : 50;
            } else {
                v = x >= ox + 3 && x < ox + 12 && y >= oy + 3 && y < oy + 12 ? 15 : 190;
            }
            v += 12 * testing_rand_normal(rng);
            px[y * PIPE_SIDE + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static void write_png(const char *path, const uint8_t *px)
{
    VipsImage *im = vips_image_new_from_memory_copy(px, PIPE_SIDE * PIPE_SIDE, PIPE_SIDE,
                                                    PIPE_SIDE, 1, VIPS_FORMAT_UCHAR);
    CU_ASSERT_FATAL(im != NULL);
    int rc = vips_pngsave(im, path, NULL);
    g_object_unref(im);
    CU_ASSERT_FATAL(rc == 0);
}

char *pipe_make_dataset(const struct env *e, const char *rel, int per_class,
                        int val_per_class, uint64_t seed)
{
    char root[4200], path[4400], err[ERR_LEN];
    snprintf(root, sizeof root, "%s/%s", e->dir, rel);
    uint8_t px[PIPE_SIDE * PIPE_SIDE];
    uint64_t rng = seed;
    for (int split = 0; split < 2; split++)
        for (int c = 0; c < PIPE_CLASSES; c++) {
            const char *sname = split ? "val" : "train";
            snprintf(path, sizeof path, "%s/%s/%s", root, sname, class_names[c]);
            CU_ASSERT_FATAL(util_mkdir_p(path, err) == 0);
            for (int i = 0; i < (split ? val_per_class : per_class); i++) {
                snprintf(path, sizeof path, "%s/%s/%s/%03d.png", root, sname,
                         class_names[c], i);
                draw(px, c, &rng);
                write_png(path, px);
            }
        }
    return xstrdup(root);
}

static void write_bytes(const char *root, const char *rel, const void *data, size_t len)
{
    char path[4400], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CU_ASSERT_FATAL(util_write_file_atomic(path, data, len, err) == 0);
}

void pipe_add_corrupt(const char *root, uint64_t seed)
{
    char path[4400], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/train/disk/000.png", root);
    size_t len;
    char *png = util_read_file(path, &len, err);
    CU_ASSERT_FATAL(png != NULL);
    write_bytes(root, pipe_corrupt_paths[0], png, len / 2);
    free(png);
    write_bytes(root, pipe_corrupt_paths[1], "", 0);
    uint8_t junk[400];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)testing_rand_u64(&seed);
    write_bytes(root, pipe_corrupt_paths[2], junk, sizeof junk);
    static const char text[] = "not a JPEG, only a text file named like one\n";
    write_bytes(root, pipe_corrupt_paths[3], text, sizeof text - 1);
}

/* Forks argv[0] (NULL-ended argv) with env_set ("NAME=VALUE" or NULL)
 * added to its environment, in a process group of its own that dies with
 * this process, its output appended to log; tracks it as a group. */
static pid_t spawn_group(const char *log, char **argv, const char *env_set)
{
    /* the environment is built before fork: the child of a threaded
     * process (libvips) may only make async-signal-safe calls */
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **envp = xcalloc(n_env + 2, sizeof *envp);
    memcpy(envp, environ, n_env * sizeof *envp);
    if (env_set)
        envp[n_env] = (char *)env_set;
    pid_t parent = getpid();
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        /* its own group, so the end of a case reaches a loader's decode
         * workers; and it dies with the test even when meson kills the
         * test */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execve(argv[0], argv, envp);
        _exit(127);
    }
    free(envp);
    setpgid(pid, pid);  /* also here, so the group exists before we use it */
    track(pid, 1);
    return pid;
}

/* argv[0..n) then extra (NULL-ended, up to 32 in all), started by
 * spawn_group with its output in e->dir/<name>.out. */
static pid_t spawn_named(const struct env *e, const char *name, char **argv, int n,
                         const char *const *extra, const char *env_set)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/%s.out", e->dir, name);
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return spawn_group(log, argv, env_set);
}

pid_t pipe_start_loader(const struct env *e, const char *name, const char *data,
                        const char *const *extra, const char *env_set)
{
    char bin[4200];
    snprintf(bin, sizeof bin, "%s", testing_program("loaders/lejepa-loader"));
    char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--connect";
    argv[n++] = (char *)e->work;
    argv[n++] = "--data";
    argv[n++] = (char *)data;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    argv[n++] = "--workers";
    argv[n++] = "1";
    return spawn_named(e, name, argv, n, extra, env_set);
}

pid_t pipe_start_evaluator(const struct env *e, const char *name,
                           const char *const *extra)
{
    char bin[4200], out[4400];
    snprintf(bin, sizeof bin, "%s", testing_program("eval/lejepa-eval"));
    snprintf(out, sizeof out, "%s/%s", e->dir, name);
    char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--connect";
    argv[n++] = (char *)e->work;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    argv[n++] = "--out";
    argv[n++] = out;
    argv[n++] = "--threads";
    argv[n++] = "1";
    return spawn_named(e, name, argv, n, extra, NULL);
}

int pipe_group_gone(pid_t loader)
{
    int st;
    /* workers orphaned by a killed loader are ours (pipe_init): reap them */
    while (waitpid(-loader, &st, WNOHANG) > 0)
        ;
    return kill(-loader, 0) != 0 && errno == ESRCH;
}

void pipe_init(void)
{
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
}

int pipe_kill_all(void)
{
    int left = 0;
    for (int i = 0; i < n_procs; i++) {
        pid_t pid = procs[i].pid;
        int st;
        /* 0: still running and ours; a reaped pid is never signalled again */
        if (waitpid(pid, &st, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        /* a group's id stays allocated while any member lives, so this can
         * only reach the loader's own workers */
        if (procs[i].group) {
            kill(-pid, SIGKILL);
            for (int k = 0; k < 200 && !pipe_group_gone(pid); k++)
                usleep(10000);
            left += !pipe_group_gone(pid);
        }
    }
    n_procs = 0;
    return left;
}

int pipe_count_text(const struct env *e, const char *rel, const char *needle)
{
    char *text = read_text(e, rel);
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(text);
    return n;
}

double pipe_mean_loss(const struct line *l, int from, int to)
{
    double s = 0;
    for (int i = from; i < to; i++)
        s += l[i].loss;
    return to > from ? s / (to - from) : NAN;
}

/* "exiting: N tickets served" from a loader's output; -1 when missing. */
int pipe_loader_served(const struct env *e, const char *name)
{
    char rel[300];
    snprintf(rel, sizeof rel, "%s.out", name);
    char *text = read_text(e, rel);
    const char *p = strstr(text, "exiting: ");
    long n = p ? strtol(p + 9, NULL, 10) : -1;
    free(text);
    return (int)n;
}

/* Stops a loader with SIGTERM; asserts it exits 0 in time. */
void pipe_stop_loader(pid_t pid)
{
    CU_ASSERT_EQUAL(kill(pid, SIGTERM), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(pid, 15), 0);
}

int pipe_run(const struct env *e, const char *name, const char *data, int loaders,
             const char *const *trainer_args, const char *const *loader_args,
             struct line *out)
{
    const char *datas[PIPE_MAX_LOADERS];
    CU_ASSERT_FATAL(loaders <= PIPE_MAX_LOADERS);
    for (int i = 0; i < loaders; i++)
        datas[i] = data;
    return pipe_run_each(e, name, datas, loaders, trainer_args, loader_args, out);
}

int pipe_run_each(const struct env *e, const char *name, const char *const *datas,
                  int loaders, const char *const *trainer_args,
                  const char *const *loader_args, struct line *out)
{
    pid_t tr = start_trainer(e, name, trainer_args);
    pipe_track(tr);
    char rel[300];
    snprintf(rel, sizeof rel, "%s/log", name);
    CU_ASSERT(wait_text(e, rel, "work endpoint", 20));
    pid_t ld[PIPE_MAX_LOADERS];
    CU_ASSERT_FATAL(loaders <= PIPE_MAX_LOADERS);
    for (int i = 0; i < loaders; i++) {
        char lname[128];
        snprintf(lname, sizeof lname, "%s-loader%d", name, i);
        ld[i] = pipe_start_loader(e, lname, datas[i], loader_args, NULL);
    }
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    /* a real loader outlives its trainer (it waits for the next one) */
    for (int i = 0; i < loaders; i++)
        pipe_stop_loader(ld[i]);
    return read_lines(e, name, out);
}

struct env *pipe_case_begin(void)
{
    CU_ASSERT_FATAL(!case_open);
    env_init(&case_env);
    case_open = 1;
    return &case_env;
}

void pipe_case_end(void)
{
    CU_ASSERT_EQUAL(pipe_kill_all(), 0);
    pipe_case_abandon();
}

void pipe_case_abandon(void)
{
    pipe_kill_all();
    if (case_open)
        env_free(&case_env);
    case_open = 0;
}

int pipe_main(const char *suite, const struct testing_case *cases, int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    pipe_init();
    if (VIPS_INIT(argv[0]) != 0) {
        fprintf(stderr, "VIPS_INIT failed: %s\n", vips_error_buffer());
        return 1;
    }
    vips_cache_set_max(0);
    int status = testing_run_named(suite, cases, argc, argv);
    pipe_case_abandon();
    vips_shutdown();
    return status;
}
