/*
 * test_util.c: the shared helpers: atomic writes leave either the old or the
 * new file, never a temp file; mkdir_p and read_file report the path at fault;
 * the checksums give their published check values; a run directory is
 * locked by one process at a time, and the refusal names the holder.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hash.h"
#include "testing.h"
#include "util.h"

static void test_atomic_write_roundtrip(void)
{
    char *dir = testing_tmpdir();
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/a/b/file.bin", dir);
    char parent[4096];
    snprintf(parent, sizeof parent, "%s/a/b", dir);
    CU_ASSERT_EQUAL(util_mkdir_p(parent, err), 0);
    CU_ASSERT_EQUAL(util_write_file_atomic(path, "hello", 5, err), 0);
    CU_ASSERT_EQUAL(util_write_file_atomic(path, "bye", 3, err), 0);
    size_t n = 0;
    char *got = util_read_file(path, &n, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_STRING_EQUAL(got, "bye");
    free(got);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CU_ASSERT_NOT_EQUAL(access(tmp, F_OK), 0);
    testing_rmtree(dir);
    free(dir);
}

static void test_errors_name_the_path(void)
{
    char err[ERR_LEN] = "";
    CU_ASSERT_PTR_NULL(util_read_file("/nonexistent/lejepa/x", NULL, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/lejepa/x"));
    err[0] = '\0';
    CU_ASSERT_EQUAL(util_write_file_atomic("/nonexistent/lejepa/y", "x", 1, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/lejepa/y"));
    char *dir = testing_tmpdir();
    char file[4096];
    snprintf(file, sizeof file, "%s/plain", dir);
    CU_ASSERT_EQUAL(util_write_file_atomic(file, "x", 1, err), 0);
    CU_ASSERT_EQUAL(util_mkdir_p(file, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));
    testing_rmtree(dir);
    free(dir);
}

/* Small buffers 64-byte aligned, big ones (the arenas) on huge-page
 * boundaries, every byte zeroed. */
static void test_aligned_alloc_is_aligned_and_zeroed(void)
{
    const size_t big = UTIL_HUGE_PAGE + 12345;
    unsigned char *h = xmalloc_aligned(big);
    const char *hp = getenv("LEJEPA_HUGEPAGES");
    CU_ASSERT_EQUAL((uintptr_t)h % (hp && strcmp(hp, "0") == 0 ? 64 : UTIL_HUGE_PAGE), 0);
    size_t nonzero = 0;
    for (size_t i = 0; i < big; i++)
        nonzero += h[i] != 0;
    CU_ASSERT_EQUAL(nonzero, 0);
    h[big - 1] = 1;     /* all of it is ours */
    util_free_aligned(h);
    for (size_t n = 1; n < 300; n += 37) {
        unsigned char *p = xmalloc_aligned(n);
        CU_ASSERT_EQUAL((uintptr_t)p % 64, 0);
        int zero = 1;
        for (size_t i = 0; i < n; i++)
            zero &= p[i] == 0;
        CU_ASSERT(zero);
        util_free_aligned(p);
    }
}

static void test_errf_truncates_and_returns_minus_one(void)
{
    char err[ERR_LEN];
    char long_name[1000];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CU_ASSERT_EQUAL(errf(err, "bad %s", long_name), -1);
    CU_ASSERT_EQUAL(strlen(err), ERR_LEN - 1);
    CU_ASSERT_EQUAL(errf(NULL, "ignored"), -1);
}

static void test_crc32c_check_values(void)
{
    /* The CRC-32C check value (RFC 3720 B.4; TFRecord's framing uses it). */
    CU_ASSERT_EQUAL(hash_crc32c(0, "123456789", 9), 0xE3069283u);
    /* 32 zero bytes and 32 0xFF bytes: RFC 3720 B.4's vectors. */
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof ones);
    CU_ASSERT_EQUAL(hash_crc32c(0, zeros, 32), 0x8A9136AAu);
    CU_ASSERT_EQUAL(hash_crc32c(0, ones, 32), 0x62A8AB43u);
    /* Continuing a CRC over two pieces equals one pass over the whole. */
    CU_ASSERT_EQUAL(hash_crc32c(hash_crc32c(0, "1234", 4), "56789", 5),
                    0xE3069283u);
    CU_ASSERT_EQUAL(hash_crc32c(0, "", 0), 0u);
    /* Slicing by 8 equals the byte loop at every length, alignment and
     * split point (seeded bytes). */
    unsigned char buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1664525u + 1013904223u;
        buf[i] = (unsigned char)(x >> 24);
    }
    int same = 1;
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 64; len++)
            for (size_t cut = 0; cut <= len; cut += 5) {
                uint32_t ref = hash_crc32c_ref(0, buf + off, len);
                uint32_t fast = hash_crc32c(hash_crc32c(0, buf + off, cut),
                                            buf + off + cut, len - cut);
                same &= ref == fast;
            }
    CU_ASSERT(same);
    CU_ASSERT_EQUAL(hash_crc32c(7, buf, sizeof buf), hash_crc32c_ref(7, buf, sizeof buf));
}

/* A child holds the lock; the parent's attempt fails naming the directory
 * and the child's pid; once the child exits the parent gets it. */
static void test_lock_dir(void)
{
    char *dir = testing_tmpdir(), err[ERR_LEN] = "";
    int ready[2], release[2];
    CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
    CU_ASSERT_EQUAL_FATAL(pipe(release), 0);
    pid_t child = fork();
    CU_ASSERT_FATAL(child >= 0);
    if (child == 0) {
        /* only the parent's copy of the write end may keep release open */
        close(release[1]);
        int fd;
        char c = util_lock_dir(dir, &fd, err) == 0 ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) < 0)
            _exit(2);
        _exit(0);
    }
    close(release[0]);
    char c = 0;
    CU_ASSERT_EQUAL_FATAL(read(ready[0], &c, 1), 1);
    CU_ASSERT_EQUAL(c, 'y');
    int fd = -1;
    CU_ASSERT_EQUAL(util_lock_dir(dir, &fd, err), -1);
    CU_ASSERT_EQUAL(fd, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
    char pid[32];
    snprintf(pid, sizeof pid, "process %ld ", (long)child);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, pid));
    close(release[1]);
    int status;
    CU_ASSERT_EQUAL(waitpid(child, &status, 0), child);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(util_lock_dir(dir, &fd, err), 0);
    CU_ASSERT(fd >= 0);
    /* a second lock, even from this process, is refused while fd is open */
    int fd2 = -1;
    CU_ASSERT_EQUAL(util_lock_dir(dir, &fd2, err), -1);
    snprintf(pid, sizeof pid, "process %ld ", (long)getpid());
    CU_ASSERT_PTR_NOT_NULL(strstr(err, pid));
    close(fd);
    CU_ASSERT_EQUAL(util_lock_dir(dir, &fd2, err), 0);
    close(fd2);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/absent", dir);
    CU_ASSERT_EQUAL(util_lock_dir(missing, &fd, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, missing));
    close(ready[0]);
    close(ready[1]);
    testing_rmtree(dir);
    free(dir);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"atomic write round trip", test_atomic_write_roundtrip},
        {"errors name the path", test_errors_name_the_path},
        {"aligned alloc", test_aligned_alloc_is_aligned_and_zeroed},
        {"errf", test_errf_truncates_and_returns_minus_one},
        {"crc32c check values", test_crc32c_check_values},
        {"run directory lock", test_lock_dir},
        {NULL, NULL},
    };
    return testing_run("util", cases);
}
