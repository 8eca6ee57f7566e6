/*
 * util.c: shared helpers (see util.h). Kept free of any knowledge of the
 * protocol or the model so every program can link it.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lejepa_version.h"

/* "" until util_set_program: then the name the kernel was given (argv[0]'s
 * last part), so every program is named without a call in its main. */
static char program_name[64];

void util_set_program(const char *name)
{
    const char *slash = name ? strrchr(name, '/') : NULL;
    snprintf(program_name, sizeof program_name, "%s",
             slash ? slash + 1 : name ? name : "");
}

const char *util_program(void)
{
    if (program_name[0])
        return program_name;
    const char *n = program_invocation_short_name;
    return n && n[0] ? n : "lejepa";
}

void util_check_failed(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s: internal error at %s:%d: CHECK(%s) failed\n",
            util_program(), file, line, expr);
    fflush(stderr);
    abort();
}

int errf(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", util_program());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        die("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory reallocating %zu bytes", n);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

/* Whether big buffers ask for transparent huge pages: yes unless
 * LEJEPA_HUGEPAGES=0 (read once; threads racing to read it agree). */
static bool huge_pages_wanted(void)
{
    static _Atomic int wanted = -1;
    int w = atomic_load_explicit(&wanted, memory_order_relaxed);
    if (w < 0) {
        const char *s = getenv("LEJEPA_HUGEPAGES");
        w = !(s && strcmp(s, "0") == 0);
        atomic_store_explicit(&wanted, w, memory_order_relaxed);
    }
    return w;
}

void *xmalloc_aligned(size_t n)
{
    size_t align = 64, rounded = (n + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    /* The engine's arenas are hundreds of MB swept by every pass: on 4 KiB
     * pages each sweep walks the page tables (Debian's THP default is
     * madvise, so huge pages come only when asked for) */
    bool huge = rounded >= UTIL_HUGE_PAGE && huge_pages_wanted();
    if (huge) {
        align = UTIL_HUGE_PAGE;
        rounded = (rounded + UTIL_HUGE_PAGE - 1) / UTIL_HUGE_PAGE * UTIL_HUGE_PAGE;
    }
    void *p = aligned_alloc(align, rounded);
    if (!p)
        die("out of memory allocating %zu aligned bytes", n);
    if (huge)
        (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice: may be refused */
    memset(p, 0, rounded);
    return p;
}

void util_free_aligned(void *p)
{
    free(p);
}

double util_time_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double util_time_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fsync_dir_of(const char *path, char *err)
{
    char *copy = xstrdup(path);
    int rc = 0;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0)
        rc = errf(err, "%s: cannot sync its directory: %s", path,
                  strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int util_atomic_open(struct atomic_file *f, const char *path, char *err)
{
    f->fd = -1;
    size_t n = strlen(path);
    if (n >= sizeof f->path)
        return errf(err, "%s: path too long", path);
    memcpy(f->path, path, n + 1);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0)
        return errf(err, "%s: cannot create: %s", f->tmp, strerror(errno));
    return 0;
}

void util_atomic_abort(struct atomic_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        unlink(f->tmp);
    }
    f->fd = -1;
}

int util_atomic_write(struct atomic_file *f, const void *data, size_t len,
                      char *err)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            errf(err, "%s: write failed: %s", f->tmp,
                 w < 0 ? strerror(errno) : "no progress");
            util_atomic_abort(f);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int util_atomic_commit(struct atomic_file *f, char *err)
{
    if (fsync(f->fd) != 0) {
        errf(err, "%s: fsync failed: %s", f->tmp, strerror(errno));
        util_atomic_abort(f);
        return -1;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) {
        errf(err, "%s: close failed: %s", f->tmp, strerror(errno));
        unlink(f->tmp);
        return -1;
    }
    if (rename(f->tmp, f->path) != 0) {
        errf(err, "%s: rename from %s failed: %s", f->path, f->tmp,
             strerror(errno));
        unlink(f->tmp);
        return -1;
    }
    return fsync_dir_of(f->path, err);
}

int util_write_file_atomic(const char *path, const void *data, size_t len,
                           char *err)
{
    struct atomic_file f;
    if (util_atomic_open(&f, path, err) != 0 ||
        util_atomic_write(&f, data, len, err) != 0)
        return -1;
    return util_atomic_commit(&f, err);
}

int util_lock_dir(const char *dir, int *fd, char *err)
{
    char path[4200];
    *fd = -1;
    if ((size_t)snprintf(path, sizeof path, "%s/.lock", dir) >= sizeof path)
        return errf(err, "%s: path too long", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return errf(err, "%s: cannot create %s: %s", dir, path, strerror(errno));
    int rc;
    while ((rc = flock(f, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        int e = errno;
        char text[32] = "";
        ssize_t n = pread(f, text, sizeof text - 1, 0);
        close(f);
        if (e != EWOULDBLOCK)
            return errf(err, "%s: cannot lock %s: %s", dir, path, strerror(e));
        long pid = n > 0 ? strtol(text, NULL, 10) : 0;
        /* The holder may not have written its pid yet: say what we know. */
        if (pid > 0)
            return errf(err, "%s is in use by process %ld (it holds %s); stop "
                        "it or use another run directory", dir, pid, path);
        return errf(err, "%s is in use by another process (it holds %s); stop "
                    "it or use another run directory", dir, path);
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, text, (size_t)n, 0) != n) {
        int e = errno;
        close(f);
        return errf(err, "%s: cannot write the pid into %s: %s", dir, path,
                    strerror(e));
    }
    *fd = f;
    return 0;
}

int util_write_rendered(const char *path, void (*render)(FILE *out, void *ctx),
                        void *ctx, char *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem)
        return errf(err, "%s: open_memstream: %s", path, strerror(errno));
    render(mem, ctx);
    if (fclose(mem) != 0) {
        free(buf);
        return errf(err, "rendering %s: out of memory", path);
    }
    int rc = util_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

char *util_read_file(const char *path, size_t *len, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        errf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        errf(err, "%s: read failed: %s", path, strerror(errno));
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int util_mkdir_p(const char *path, char *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return errf(err, "'%s': bad directory path", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return errf(err, "%s: cannot create directory: %s", buf,
                        strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return errf(err, "%s: cannot create directory: %s", buf,
                    strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return errf(err, "%s: exists and is not a directory", buf);
    return 0;
}

long util_parse_long(const char *opt, const char *s, long lo, long hi)
{
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s %s: expected an integer in %ld..%ld", opt, s, lo, hi);
    return v;
}

static char log_name[256] = "lejepa";

void util_log_set_name(const char *name)
{
    snprintf(log_name, sizeof log_name, "%s", name);
}

void util_log(const char *fmt, ...)
{
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%H:%M:%S", localtime_r(&t, &tm));
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s [%s] %s\n", stamp, log_name, line);
}

void util_print_build_info(FILE *out, const char *program)
{
    fprintf(out, "%s %s\n", program, LEJEPA_VERSION);
}

static volatile sig_atomic_t stop_count;
static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    (void)sig;
    int saved = errno;
    stop_count++;
    char b = 1;
    if (write(stop_pipe[1], &b, 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
    errno = saved;
}

int util_stop_signals_init(void)
{
    CHECK(stop_pipe[0] < 0);
    if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        die("sigaction: %s", strerror(errno));
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        die("sigaction: %s", strerror(errno));
    return stop_pipe[0];
}

int util_stop_fd(void)
{
    return stop_pipe[0];
}

volatile sig_atomic_t *util_stop_signals(void)
{
    return &stop_count;
}

int util_stop_drain(void)
{
    int n = 0;
    char buf[64];
    ssize_t r;
    while ((r = read(stop_pipe[0], buf, sizeof buf)) > 0)
        n += (int)r;
    return n;
}
