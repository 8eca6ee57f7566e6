/*
 * loader_worker.c: the child side of a decode worker (loader_work.h). A
 * forked process that initialises libvips itself, then answers jobs read
 * from its pipe, one at a time: decode the file (image_load), cut the views
 * (augment_views / augment_eval_view) and write back a reply header plus
 * the pixels or the reason. It holds no state between jobs and never talks
 * to ZeroMQ. It exits when the parent closes the pipe.
 *
 * Test hook: LEJEPA_LOADER_FAULT="crash:SUBSTR", "hang:SUBSTR" or
 * "alloc:SUBSTR" makes a job whose path contains SUBSTR raise SIGSEGV,
 * sleep forever, or allocate and touch 1 GiB the way a decompression bomb
 * would (g_malloc, which aborts when the memory limit refuses it), so tests
 * can check that crashes, hangs and the memory limit cost one sample, not
 * the loader.
 *
 * libvips runs with untrusted operations blocked (vips_block_untrusted_set):
 * the files are whatever a dataset holds, and loaders such as ImageMagick,
 * matload or the FITS reader are not meant for hostile input.
 */
#include "loader_work.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "augment.h"
#include "dataset.h"

static void child_fault(const char *path)
{
    const char *spec = getenv("LEJEPA_LOADER_FAULT");
    if (!spec)
        return;
    const char *sep = strchr(spec, ':');
    if (!sep || !sep[1] || !strstr(path, sep + 1))
        return;
    if (strncmp(spec, "crash:", 6) == 0)
        raise(SIGSEGV);
    if (strncmp(spec, "hang:", 5) == 0)
        for (;;)
            pause();
    if (strncmp(spec, "alloc:", 6) == 0) {
        size_t n = (size_t)1 << 30;
        volatile char *p = g_malloc(n);
        for (size_t i = 0; i < n; i += 4096)
            p[i] = 1;
        g_free((void *)p);
    }
}

/* A file we cannot open is not a file we failed to decode: missing,
 * unreadable or an I/O error is the loader's situation (MSG_FAIL_ENV). */
static int child_check_readable(const char *path, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errf(err, "%s: cannot open: %s", path, strerror(errno));
    char b;
    ssize_t r = read(fd, &b, 1);
    int e = errno;
    close(fd);
    if (r < 0)
        return errf(err, "%s: cannot read: %s", path, strerror(e));
    return 0;
}

/* Decodes and augments one job into out (work_sample_bytes bytes); on
 * failure says in *fail_class whose fault it was. */
static int child_run_job(const struct work_job *j, uint8_t *out,
                         enum msg_fail_class *fail_class, char *err)
{
    const struct config_views *v = &j->views;
    struct image im;
    child_fault(j->path);
    *fail_class = MSG_FAIL_ENV;
    if (child_check_readable(j->path, err) < 0)
        return -1;
    /* Crops depend on the decoded size, so the shrink-on-load target is a
     * function of the config alone: the same in every loader of a run. The
     * eval view needs only the global size; training crops need enough
     * pixels that the smallest crop still has full resolution. */
    int target = j->work == MSG_WORK_EVAL ? (int)v->global_size
                                          : augment_load_target(v);
    int rc;
    if (j->member >= 0) {
        /* a shard's member: reading it is the loader's business (a copy
         * may be truncated), decoding its bytes the file's */
        void *buf;
        size_t len;
        char name[WORK_PATH_MAX + 256];
        int got = dataset_read_member(j->path, (uint64_t)j->member, &buf, &len, name,
                                      sizeof name, err);
        if (got == -2)
            *fail_class = MSG_FAIL_DECODE;
        if (got < 0)
            return -1;
        rc = image_load_buffer(&im, buf, len, name, (int)v->channels, v->max_pixels,
                               target, err);
        free(buf);
    } else {
        rc = image_load(&im, j->path, (int)v->channels, v->max_pixels, target, err);
    }
    if (rc < 0) {
        /* libvips' tracked allocations fail with "out of memory" under the
         * worker's memory limit: that is ours, everything else the file's */
        *fail_class = strstr(err, "out of memory") ? MSG_FAIL_ENV : MSG_FAIL_DECODE;
        return -1;
    }
    if (j->work == MSG_WORK_EVAL) {
        augment_eval_view(out, &im, v);
    } else {
        uint8_t *global[WORK_VIEWS_MAX], *local[WORK_VIEWS_MAX];
        size_t gb = (size_t)(v->channels * v->global_size * v->global_size);
        size_t lb = (size_t)(v->channels * v->local_size * v->local_size);
        for (int64_t i = 0; i < v->global_count; i++)
            global[i] = out + (size_t)i * gb;
        for (int64_t i = 0; i < v->local_count; i++)
            local[i] = out + (size_t)v->global_count * gb + (size_t)i * lb;
        augment_views(global, local, &im, v, j->seed, j->epoch, j->index);
        if (j->eval_view)   /* after the training views (work_sample_bytes) */
            augment_eval_view(out + (size_t)v->global_count * gb +
                                  (size_t)v->local_count * lb,
                              &im, v);
    }
    image_free(&im);
    return 0;
}

void work_child_main(int fd)
{
    signal(SIGINT, SIG_IGN);    /* the parent decides when workers stop */
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    if (VIPS_INIT("lejepa-loader-worker") != 0) {
        fprintf(stderr, "lejepa-loader worker: VIPS_INIT failed: %s\n", vips_error_buffer());
        _exit(3);
    }
    vips_block_untrusted_set(TRUE);
    vips_cache_set_max(0);
    vips_concurrency_set(1);    /* parallelism comes from the worker count */
    uint8_t ready = 1;          /* tells the parent libvips is up */
    if (work_write_full(fd, &ready, 1) < 0)
        _exit(0);

    static struct work_job job;
    uint8_t *out = NULL;
    size_t cap = 0;
    while (work_read_full(fd, &job, sizeof job) == 0) {
        job.path[WORK_PATH_MAX - 1] = '\0';
        size_t need = work_sample_bytes(&job);
        if (need > cap) {
            free(out);
            out = xmalloc(need);
            cap = need;
        }
        char err[ERR_LEN] = "";
        struct work_reply r = {0};
        const void *body = out;
        /* a view spec this worker refuses is no fault of the file */
        enum msg_fail_class fail_class = MSG_FAIL_ENV;
        if (work_views_check(&job.views, err) < 0 ||
            child_run_job(&job, out, &fail_class, err) < 0) {
            r.ok = 0;
            r.fail_class = (int32_t)fail_class;
            r.len = (uint32_t)strnlen(err, ERR_LEN - 1);
            body = err;
        } else {
            r.ok = 1;
            r.len = (uint32_t)need;
        }
        if (work_write_full(fd, &r, sizeof r) < 0 || work_write_full(fd, body, r.len) < 0)
            break;
    }
    free(out);
    _exit(0);
}
