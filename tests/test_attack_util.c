/*
 * test_attack_util.c: the attacker's sockets and the outside view of the
 * trainer for tests/test_attack.c (see test_attack_util.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "test_attack_util.h"
#include "testing.h"
#include "util.h"

void attacker_init(struct attacker *a)
{
    a->ctx = zmq_ctx_new();
    CU_ASSERT_FATAL(a->ctx != NULL);
    msg_limits_default(&a->lim);
    /* a trainer's replies may be larger than the defaults (a history page
     * holding a 150 KB line); the attacker is not the one under test */
    a->lim.max_msg_bytes = 16 << 20;
    a->lim.max_str = 4 << 20;
    msg_arena_init(&a->arena);
}

void attacker_free(struct attacker *a)
{
    msg_arena_free(&a->arena);
    zmq_ctx_term(a->ctx);
}

void *attack_dealer(struct attacker *a, const char *endpoint, const char *id,
                    int rcvhwm)
{
    void *s = zmq_socket(a->ctx, ZMQ_DEALER);
    CU_ASSERT_FATAL(s != NULL);
    int zero = 0, sndtimeo = 200;
    CU_ASSERT(zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)) == 0);
    CU_ASSERT(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CU_ASSERT(zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo) == 0);
    if (rcvhwm > 0)
        CU_ASSERT(zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) == 0);
    CU_ASSERT_FATAL(zmq_connect(s, endpoint) == 0);
    return s;
}

int attack_send(void *s, const struct msg *m, int flags)
{
    char err[ERR_LEN];
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    int rc = -1;
    if (msg_encode(m, &buf, err) != 0)
        fprintf(stderr, "attack: cannot encode %s: %s\n", msg_kind_name(m->kind), err);
    else
        rc = zmq_send(s, buf.data, buf.size, flags) == (int)buf.size ? 0 : -1;
    msgpack_sbuffer_destroy(&buf);
    return rc;
}

int attack_hello(void *s, enum msg_role role, const char *name, uint32_t credit)
{
    static const char *const classes[10] = {"c0", "c1", "c2", "c3", "c4",
                                            "c5", "c6", "c7", "c8", "c9"};
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = role, .name = name, .software = "test_attack", .pid = 1,
        .credit = role == MSG_ROLE_LOADER ? credit : 0,
        .eval_view = role == MSG_ROLE_LOADER, .has_dataset = role == MSG_ROLE_LOADER,
        .dataset = {0x1234, 40, 8, 10, (const char **)classes},
    };
    return attack_send(s, &m, 0);
}

int attack_expect(struct attacker *a, void *s, enum msg_kind want, int timeout_ms)
{
    double end = util_time_mono() + timeout_ms / 1000.0;
    for (;;) {
        double left = end - util_time_mono();
        if (left <= 0)
            return 0;
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, (long)(left * 1000) + 1) <= 0)
            continue;
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        int rc = msg_recv(s, ZMQ_DONTWAIT, &frame, &m, &a->lim, &a->arena, err);
        bool got = rc == 0 && m.kind == want;
        zmq_msg_close(&frame);
        if (got)
            return 1;
    }
}

void attack_drain(void *s)
{
    char buf[256];
    while (zmq_recv(s, buf, sizeof buf, ZMQ_DONTWAIT) >= 0)
        ;
}

int attack_result(void *s, enum msg_source source, double time, uint64_t step,
                  const char *prefix, int n, int key_len, int flags)
{
    CU_ASSERT_FATAL(n <= 256 && key_len <= MSG_NAME_MAX);
    struct msg_value *v = xcalloc((size_t)(n ? n : 1), sizeof *v);
    char **keys = xcalloc((size_t)(n ? n : 1), sizeof *keys);
    for (int k = 0; k < n; k++) {
        keys[k] = xmalloc((size_t)key_len + 1);
        int len = snprintf(keys[k], (size_t)key_len + 1, "%s%03d_", prefix, k);
        for (int i = len; i < key_len; i++)
            keys[k][i] = 'x';
        if (len < key_len)
            keys[k][key_len] = '\0';
        v[k] = (struct msg_value){keys[k], (double)k};
    }
    struct msg m = {.kind = MSG_KIND_RESULT};
    m.result = (struct msg_metric){.time = time, .step = step, .epoch = 0,
                                   .source = source, .n_values = (uint32_t)n,
                                   .values = v};
    int rc = attack_send(s, &m, flags);
    for (int k = 0; k < n; k++)
        free(keys[k]);
    free(keys);
    free(v);
    return rc;
}

bool proc_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' */
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

struct last_ctx {
    const char *key;
    uint64_t step;
    double value;
};

static void take_last(const struct json *j, void *ctx)
{
    struct last_ctx *c = ctx;
    double step = json_number(j, "step");
    c->step = isnan(step) ? 0 : (uint64_t)step;
    c->value = c->key ? json_number(j, c->key) : NAN;
}

double train_last(const struct env *e, const char *name, const char *key,
                  uint64_t *step)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    struct last_ctx c = {key, 0, NAN};
    metrics_each(path, "train", take_last, &c);
    if (step)
        *step = c.step;
    return c.value;
}

int wait_step(const struct env *e, const char *name, uint64_t step, double timeout)
{
    double t0 = util_time_mono();
    for (;;) {
        uint64_t got;
        train_last(e, name, NULL, &got);
        if (got >= step)
            return 1;
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(100000);
    }
}

static long metrics_size(const struct env *e, const char *name)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

int wait_metrics_bytes(const struct env *e, const char *name, long bytes,
                       double timeout)
{
    double t0 = util_time_mono();
    while (metrics_size(e, name) < bytes) {
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(50000);
    }
    return 1;
}

long metrics_bytes_with(const struct env *e, const char *name, const char *needle)
{
    char rel[300];
    snprintf(rel, sizeof rel, "%s/metrics.jsonl", name);
    char *text = read_text(e, rel);
    long bytes = 0;
    for (char *p = text, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        if (strstr(p, needle))
            bytes += (long)(nl - p) + 1;
    }
    free(text);
    return bytes;
}

/* The end of the trainer's output and log, when a check fails. */
static void show_trainer(const struct env *e, const char *name)
{
    char rel[300];
    const char *what[] = {"%s.out", "%s/log"};
    for (int i = 0; i < 2; i++) {
        snprintf(rel, sizeof rel, what[i], name);
        char *text = read_text(e, rel);
        size_t n = strlen(text);
        fprintf(stderr, "  --- the end of %s:\n%s\n", rel, text + (n > 800 ? n - 800 : 0));
        free(text);
    }
}

int check_serving(struct attacker *a, const struct env *e, const char *name,
                  pid_t tr, uint64_t steps)
{
    uint64_t from, now;
    train_last(e, name, NULL, &from);
    bool alive = proc_alive(tr);
    double t0 = util_time_mono();
    for (now = from; alive && now < from + steps && util_time_mono() - t0 < 20;
         alive = proc_alive(tr)) {
        usleep(100000);
        train_last(e, name, NULL, &now);
    }
    CU_ASSERT(alive);
    if (!alive) {
        fprintf(stderr, "\n  check_serving: the trainer is gone\n");
        show_trainer(e, name);
        return 0;
    }
    int stepped = now >= from + steps;
    CU_ASSERT(stepped);
    if (!stepped)
        fprintf(stderr, "\n  check_serving: no step past %" PRIu64 " in 20 s\n", now);
    static int serial;
    char id[64];
    snprintf(id, sizeof id, "newcomer-%d-%d", (int)getpid(), serial++);
    void *s = attack_dealer(a, e->work, id, 0);
    int welcomed = attack_hello(s, MSG_ROLE_MONITOR, id, 0) == 0 &&
                   attack_expect(a, s, MSG_KIND_WELCOME, 5000);
    CU_ASSERT(welcomed);
    if (!welcomed)
        fprintf(stderr, "\n  check_serving: a new monitor got no WELCOME in 5 s\n");
    if (welcomed) {
        struct msg bye = {.kind = MSG_KIND_BYE};
        bye.bye.reason = "checked";
        attack_send(s, &bye, ZMQ_DONTWAIT);
    }
    zmq_close(s);
    if (!stepped || !welcomed)
        show_trainer(e, name);
    return alive && stepped && welcomed;
}

pid_t start_target(const struct env *e, const char *name, const char *const *extra)
{
    const char *args[64] = {"--steps", "100000", "--set", "eval.every=-1"};
    int n = 4;
    for (int i = 0; extra && extra[i] && n < 63; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    pid_t tr = start_trainer(e, name, args);
    char rel[300];
    snprintf(rel, sizeof rel, "%s/log", name);
    CU_ASSERT_FATAL(wait_text(e, rel, "work endpoint", 20));
    return tr;
}

void stop_target(pid_t tr, const pid_t *loaders)
{
    kill(tr, SIGINT);
    int rc = testing_wait_exit(tr, 10);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        fprintf(stderr, "\n  the trainer's exit after SIGINT: %d\n", rc);
    for (int i = 0; loaders && loaders[i]; i++) {
        int lrc = testing_wait_exit(loaders[i], 10);
        CU_ASSERT(lrc == 0 || lrc == 5);
    }
}

void end_target(int serving, pid_t tr, const pid_t *loaders)
{
    if (serving) {
        stop_target(tr, loaders);
        return;
    }
    kill(tr, SIGKILL);
    testing_wait_exit(tr, 5);
    for (int i = 0; loaders && loaders[i]; i++) {
        kill(loaders[i], SIGKILL);
        testing_wait_exit(loaders[i], 5);
    }
}
