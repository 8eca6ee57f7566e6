/*
 * bench_attack.c: what issue 11's attacks cost a live run (run by hand, not
 * a test). Starts lejepa-train with two honest fake loaders (the tests'
 * tests/fake_loader, a program of the build) on a small model, measures
 * the steps it makes in a window and its RSS, then does the same with every
 * attack of the table running at once:
 *   a monitor socket saying HELLO 1000 times a second and never reading;
 *   six monitors asking HISTORY 100 times a second each, never reading;
 *   an evaluator saying HELLO again every 1.5 s;
 *   an evaluator sending RESULTs 1000 times a second (some with time 1e300,
 *   some over the size limit), and a monitor sending RESULTs;
 *   a SUB on the broadcast port that never reads;
 *   a loader that never answers, one whose samples all fail (env), and one
 *   that forges batches (fake_loader options).
 * Prints steps/s attacked over unattacked (target >= 90%) and the trainer's
 * RSS growth under attack (target < 64 MB).
 *
 *   bench_attack [--seconds S] [--build DIR]
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "msg.h"
#include "util.h"

#define N_HISTORY 6

static char build[4096] = "build";
static char dir[4096];

static pid_t spawn(char **argv, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);
        if (f)
            dup2(fileno(f), 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* train lines in runs/NAME/metrics.jsonl */
static long train_lines(const char *name)
{
    char path[8400], line[65536];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, name);
    FILE *f = fopen(path, "r");
    long n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "\"source\":\"train\"") != NULL;
    if (f)
        fclose(f);
    return n;
}

static void *dealer(void *ctx, const char *ep, const char *name, enum msg_role role)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_ROUTING_ID, name, strlen(name));
    if (zmq_connect(s, ep) != 0)
        die("bench_attack: connect %s: %s", ep, zmq_strerror(zmq_errno()));
    struct msg h = {.kind = MSG_KIND_HELLO};
    h.hello = (struct msg_hello){.role = role, .name = name, .software = "bench",
                                 .pid = (uint64_t)getpid()};
    char err[ERR_LEN];
    msg_send(s, &h, err);
    return s;
}

/* Sends, and goes on whatever happens: an attacker does not care. */
static void send_nb(void *s, const struct msg *m)
{
    char err[ERR_LEN];
    msg_send(s, m, err);
}

/* One run of `seconds`; attacked: with every attack. Returns steps/s; RSS
 * at the start of the window and its peak in *rss0, *rss1 (kB). */
static double run(const char *name, int seconds, bool attacked, long *rss0,
                  long *rss1)
{
    char trainer[4200], loader[4200], ep[4300], bc[4300], log[8400], out[4200];
    snprintf(trainer, sizeof trainer, "%s/trainer/lejepa-train", build);
    snprintf(loader, sizeof loader, "%s/tests/fake_loader", build);
    snprintf(ep, sizeof ep, "ipc://%s/%s-w", dir, name);
    snprintf(bc, sizeof bc, "ipc://%s/%s-b", dir, name);
    char set_ep[4400], set_bc[4400];
    snprintf(set_ep, sizeof set_ep, "run.endpoint=%s", ep);
    snprintf(set_bc, sizeof set_bc, "run.broadcast=%s", bc);
    snprintf(out, sizeof out, "%s", dir);
    char *targv[] = {trainer, "--out", out, "--name", (char *)name, "--steps",
                     "1000000", "--set", set_ep, "--set", set_bc,
                     "--set", "model.depths=1,1", "--set", "model.widths=16,32",
                     "--set", "model.projector=256,64", "--set", "optim.batch=32",
                     "--set", "run.ticket_size=8", "--set", "views.global_size=28",
                     "--set", "views.local_size=14", "--set", "views.local_count=2",
                     "--set", "run.log_every=1", "--set", "run.threads=1",
                     "--set", "eval.every=50", "--set", "eval.chunk=64",
                     "--set", "run.ckpt_every=0", NULL};
    snprintf(log, sizeof log, "%s/%s.trainer.out", dir, name);
    pid_t tr = spawn(targv, log);
    usleep(1500000);
    pid_t ld[5];
    int nl = 0;
    const char *honest[] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        char lname[64];
        snprintf(lname, sizeof lname, "%s-%s", name, honest[i]);
        char *largv[] = {loader, "--connect", ep, "--name", lname, NULL};
        snprintf(log, sizeof log, "%s/%s.out", dir, lname);
        ld[nl++] = spawn(largv, log);
    }
    void *ctx = zmq_ctx_new();
    void *flood = NULL, *hist[N_HISTORY] = {0}, *rehello = NULL, *results = NULL,
         *monres = NULL, *deaf = NULL;
    if (attacked) {
        char *never[] = {loader, "--connect", ep, "--name", "never",
                         "--never-answer", NULL};
        char *envfail[] = {loader, "--connect", ep, "--name", "envfail",
                           "--fail-mod", "1", "--fail-class", "env", NULL};
        char *forger[] = {loader, "--connect", ep, "--name", "forger",
                          "--forge-batch", "1000000", NULL};
        char **bad[] = {never, envfail, forger};
        for (int i = 0; i < 3; i++) {
            snprintf(log, sizeof log, "%s/%s-bad%d.out", dir, name, i);
            ld[nl++] = spawn(bad[i], log);
        }
        flood = dealer(ctx, ep, "flood", MSG_ROLE_MONITOR);
        for (int i = 0; i < N_HISTORY; i++) {
            char n[32];
            snprintf(n, sizeof n, "hist%d", i);
            hist[i] = dealer(ctx, ep, n, MSG_ROLE_MONITOR);
        }
        rehello = dealer(ctx, ep, "rehello", MSG_ROLE_EVALUATOR);
        results = dealer(ctx, ep, "results", MSG_ROLE_EVALUATOR);
        monres = dealer(ctx, ep, "monres", MSG_ROLE_MONITOR);
        deaf = zmq_socket(ctx, ZMQ_SUB);
        int one = 1;
        zmq_setsockopt(deaf, ZMQ_RCVHWM, &one, sizeof one);
        zmq_setsockopt(deaf, ZMQ_SUBSCRIBE, "", 0);
        zmq_connect(deaf, bc);
    }
    /* a warm-up, then the window */
    sleep(3);
    long n0 = train_lines(name);
    *rss0 = rss_kb(tr);
    *rss1 = *rss0;
    double t0 = util_time_mono(), last_rehello = t0;
    struct msg_value big[64];
    char keys[64][16];
    for (int i = 0; i < 64; i++) {
        snprintf(keys[i], sizeof keys[i], "k%02d", i);
        big[i] = (struct msg_value){keys[i], (double)i};
    }
    long ticks = 0;
    while (util_time_mono() - t0 < seconds) {
        if (attacked) {
            struct msg h = {.kind = MSG_KIND_HELLO};
            h.hello = (struct msg_hello){.role = MSG_ROLE_MONITOR, .name = "flood",
                                         .software = "bench", .pid = 1};
            send_nb(flood, &h);
            if (ticks % 10 == 0)
                for (int i = 0; i < N_HISTORY; i++) {
                    struct msg q = {.kind = MSG_KIND_HISTORY};
                    send_nb(hist[i], &q);
                }
            struct msg r = {.kind = MSG_KIND_RESULT};
            r.result = (struct msg_metric){
                .time = ticks % 7 ? util_time_unix() : 1e300, .step = 1,
                .source = MSG_SOURCE_KNN, .n_values = ticks % 11 ? 1 : 64,
                .values = big};
            send_nb(results, &r);
            if (ticks % 100 == 0)
                send_nb(monres, &r);
            double now = util_time_mono();
            if (now - last_rehello > 1.5) {
                struct msg hh = {.kind = MSG_KIND_HELLO};
                hh.hello = (struct msg_hello){.role = MSG_ROLE_EVALUATOR,
                                              .name = "rehello", .software = "bench",
                                              .pid = 1};
                send_nb(rehello, &hh);
                last_rehello = now;
            }
        }
        long r = rss_kb(tr);
        if (r > *rss1)
            *rss1 = r;
        ticks++;
        usleep(1000);
    }
    double dt = util_time_mono() - t0;
    long n1 = train_lines(name);
    bool alive = kill(tr, 0) == 0;
    kill(tr, SIGKILL);
    waitpid(tr, NULL, 0);
    for (int i = 0; i < nl; i++) {
        kill(ld[i], SIGKILL);
        waitpid(ld[i], NULL, 0);
    }
    void *socks[] = {flood, rehello, results, monres, deaf};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        if (socks[i])
            zmq_close(socks[i]);
    for (int i = 0; i < N_HISTORY; i++)
        if (hist[i])
            zmq_close(hist[i]);
    zmq_ctx_term(ctx);
    if (!alive)
        printf("bench_attack: the trainer died during the %s run\n", name);
    return alive ? (double)(n1 - n0) / dt : 0;
}

int main(int argc, char **argv)
{
    int seconds = 30;
    static const struct option opts[] = {
        {"seconds", required_argument, NULL, 's'},
        {"build", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': seconds = (int)util_parse_long("--seconds", optarg, 5, 3600); break;
        case 'b': snprintf(build, sizeof build, "%s", optarg); break;
        case 'h':
            puts("usage: bench_attack [--seconds S (30)] [--build DIR (build)]\n"
                 "Steps/s of a small run under every attack of issue 11 at once\n"
                 "against the same run unattacked, and the trainer's RSS growth.");
            return 0;
        default: return 2;
        }
    }
    snprintf(dir, sizeof dir, "/tmp/bench-attack-%d", (int)getpid());
    char err[ERR_LEN];
    if (util_mkdir_p(dir, err) != 0)
        die("bench_attack: %s", err);
    long a0, a1, b0, b1;
    double clean = run("clean", seconds, false, &a0, &a1);
    double hit = run("attacked", seconds, true, &b0, &b1);
    printf("bench_attack: %d s windows, 1 trainer thread, 2 honest fake loaders\n",
           seconds);
    printf("  unattacked: %.1f steps/s, RSS %.1f -> %.1f MB\n", clean, a0 / 1024.0,
           a1 / 1024.0);
    printf("  attacked:   %.1f steps/s, RSS %.1f -> %.1f MB (growth %.1f MB; "
           "target < 64)\n",
           hit, b0 / 1024.0, b1 / 1024.0, (b1 - b0) / 1024.0);
    printf("  ratio: %.1f%% of the unattacked rate (target >= 90%%)\n",
           clean > 0 ? 100.0 * hit / clean : 0.0);
    printf("  logs and metrics in %s\n", dir);
    return 0;
}
