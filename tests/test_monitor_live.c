/*
 * test_monitor_live.c: lejepa-monitor as a process against a FAKE TRAINER
 * played by this test (ROUTER + XPUB on ephemeral loopback ports, speaking
 * proto/msg.h): HELLO/WELCOME, HISTORY in several pages, METRIC published
 * while and after the history is fetched (so some lines arrive both ways),
 * heartbeats, a silent trainer (the monitor must reconnect and fetch again),
 * SIGINT (BYE, exit 0), REFUSE (exit 1 with the reason), --once and --from.
 * Every check reads the dashboard.html the monitor wrote: each metrics line
 * must be drawn exactly once (data-total per series).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_trainer.h"
#include "msg.h"
#include "test_monitor_check.h"
#include "testing.h"
#include "util.h"

#define T0 1764000000.0
#define MAX_RECORDS 128
#define LINE_MAX_LEN 512

struct record {
    double time;            /* exact; the line prints it with 3 decimals */
    uint64_t step;
    uint32_t epoch;
    enum msg_source source;
    uint32_t n;
    struct msg_value values[5];
};

struct fake {
    struct fake_trainer ft;     /* first: the callbacks cast back */
    struct record recs[MAX_RECORDS];
    char lines[MAX_RECORDS][LINE_MAX_LEN];
    size_t n_recs;
    size_t page;                /* lines per HISTORY reply */
    bool need_sub;              /* hold HISTORY replies until subscribed */
    int publish_after_page1;    /* records appended + published right after
                                   the first reply of a connection */
    bool pending;               /* a HISTORY request waits for the subscription */
    uint64_t pending_start;
    int history_requests, done_replies;
};

static void make_record(struct fake *f, size_t i)
{
    CU_ASSERT_FATAL(i < MAX_RECORDS);
    struct record *r = &f->recs[i];
    memset(r, 0, sizeof *r);
    r->time = T0 + 0.25 * (double)i + 0.0004321;
    r->step = i;
    r->epoch = (uint32_t)(i / 20);
    if (i % 5 == 4) {
        r->source = MSG_SOURCE_EVAL;
        r->n = 1;
        r->values[0] = (struct msg_value){"probe_acc_val", 0.1 + 0.008 * (double)i};
    } else {
        r->source = MSG_SOURCE_TRAIN;
        r->n = 5;
        r->values[0] = (struct msg_value){"loss", 2.0 / (1.0 + (double)i)};
        r->values[1] = (struct msg_value){"inv", 0.5 / (1.0 + (double)i)};
        r->values[2] = (struct msg_value){"sigreg", 1.0 + 1.0 / (1.0 + (double)i)};
        r->values[3] = (struct msg_value){"images_per_s", 1000.0 + (double)(i % 7)};
        r->values[4] = (struct msg_value){"lr", 1e-4 * (double)(i + 1)};
    }
    char *p = f->lines[i];
    int n = snprintf(p, LINE_MAX_LEN, "{\"time\":%.3f,\"step\":%zu,\"epoch\":%u,"
                     "\"source\":\"%s\"", r->time, i, r->epoch, msg_source_name(r->source));
    for (uint32_t k = 0; k < r->n; k++)
        n += snprintf(p + n, LINE_MAX_LEN - (size_t)n, ",\"%s\":%.17g", r->values[k].key,
                      r->values[k].value);
    snprintf(p + n, LINE_MAX_LEN - (size_t)n, ",\"batch_hash\":\"%08zx\"}", i * 2654435761u);
}

/* Appends record n_recs to the history; publishes it as METRIC if asked. */
static void fake_append(struct fake *f, bool publish)
{
    size_t i = f->n_recs++;
    make_record(f, i);
    if (!publish)
        return;
    const struct record *r = &f->recs[i];
    struct msg m = {.kind = MSG_KIND_METRIC};
    m.metric = (struct msg_metric){.time = r->time, .step = r->step, .epoch = r->epoch,
                                   .source = r->source, .n_values = r->n,
                                   .values = r->values};
    fake_trainer_publish(&f->ft, &m);
}

static void fake_history_reply(struct fake *f, uint64_t start)
{
    const char *ptrs[MAX_RECORDS];
    size_t n = 0;
    for (size_t i = (size_t)start; i < f->n_recs && n < f->page; i++)
        ptrs[n++] = f->lines[i];
    struct msg m = {.kind = MSG_KIND_HISTORY};
    m.history = (struct msg_history){.start = start, .n_lines = (uint32_t)n,
                                     .lines = ptrs, .done = start + n >= f->n_recs};
    f->done_replies += m.history.done;
    fake_trainer_send(&f->ft, &m);
    if (start == 0)
        for (; f->publish_after_page1 > 0; f->publish_after_page1--)
            fake_append(f, true);
}

static void fake_on_message(struct fake_trainer *ft, const struct msg *m)
{
    struct fake *f = (struct fake *)ft;
    if (m->kind != MSG_KIND_HISTORY) {
        CU_FAIL("unexpected message kind from the monitor");
        return;
    }
    f->history_requests++;
    CU_ASSERT_EQUAL(m->history.n_lines, 0);
    if (f->need_sub && !fake_trainer_subscribed(ft, "METRIC")) {
        f->pending = true;
        f->pending_start = m->history.start;
    } else {
        fake_history_reply(f, m->history.start);
    }
}

static void fake_after_poll(struct fake_trainer *ft)
{
    struct fake *f = (struct fake *)ft;
    if (f->pending && fake_trainer_subscribed(ft, "METRIC")) {
        f->pending = false;
        fake_history_reply(f, f->pending_start);
    }
}

static void fake_init(struct fake *f, size_t page)
{
    memset(f, 0, sizeof *f);
    fake_trainer_init(&f->ft);
    f->ft.role = MSG_ROLE_MONITOR;
    f->ft.software = "lejepa-monitor";
    f->ft.client_id = 7;
    f->ft.on_message = fake_on_message;
    f->ft.after_poll = fake_after_poll;
    f->page = page;
}

/* Expected points per series for records [0, n). */
static void expected(const struct fake *f, size_t n, long *train, long *eval)
{
    *train = *eval = 0;
    for (size_t i = 0; i < n; i++) {
        *train += f->recs[i].source == MSG_SOURCE_TRAIN;
        *eval += f->recs[i].source == MSG_SOURCE_EVAL;
    }
}

/* True when the dashboard draws every one of the first n records once. */
static bool dashboard_has(const struct fake *f, const char *path, size_t n, bool report)
{
    char err[ERR_LEN];
    size_t len;
    char *html = util_read_file(path, &len, err);
    if (!html)
        return false;
    long train, eval;
    expected(f, n, &train, &eval);
    static const char *const train_series[][2] = {
        {"loss", "loss"}, {"loss", "inv"}, {"loss", "sigreg"},
        {"throughput", "images_per_s"}, {"lr", "lr"}};
    bool ok = true;
    for (size_t k = 0; k < 5; k++) {
        long got = check_series_total(html, train_series[k][0], train_series[k][1]);
        ok &= got == train;
        if (report)
            CU_ASSERT_EQUAL(got, train);
    }
    long got = check_series_total(html, "acc_step", "probe_acc_val");
    ok &= got == eval;
    char want[64];
    snprintf(want, sizeof want, "; %zu records", n);
    ok &= strstr(html, want) != NULL;
    if (report) {
        CU_ASSERT_EQUAL(got, eval);
        CU_ASSERT_PTR_NOT_NULL(strstr(html, want));
        CU_ASSERT_PTR_NOT_NULL(strstr(html, "<span id=\"run\">fake-run</span>"));
        CU_ASSERT_PTR_NULL(strstr(html, "batch_hash"));
    }
    free(html);
    return ok;
}

static void test_live_history_and_metrics(void)
{
    struct fake f;
    fake_init(&f, 25);
    f.need_sub = true;
    for (int i = 0; i < 40; i++)
        fake_append(&f, false);
    char *dir = testing_tmpdir(), args[4096], log[4200], dash[4200];
    snprintf(log, sizeof log, "%s/monitor.log", dir);
    snprintf(dash, sizeof dash, "%s/out/dashboard.html", dir);
    snprintf(args, sizeof args, "--connect %s --out '%s/out' --every 0.1 --no-table",
             f.ft.work_ep, dir);
    pid_t pid = fake_spawn("tools/lejepa-monitor", args, log);

    /* Page 1 (lines 0-24) goes out once subscribed; then line 40 is appended
     * and published before page 2 (25-40) is asked for: it arrives both ways. */
    f.publish_after_page1 = 1;
    double end = util_time_mono() + 10;
    while (util_time_mono() < end && f.done_replies == 0)
        fake_trainer_poll(&f.ft, 10);
    CU_ASSERT(fake_trainer_subscribed(&f.ft, "METRIC"));
    CU_ASSERT_EQUAL(f.history_requests, 2);
    CU_ASSERT_EQUAL(f.done_replies, 1);
    /* Live lines 41-49, then the catch-up request re-sends them. */
    for (int i = 0; i < 9; i++) {
        fake_append(&f, true);
        fake_trainer_poll(&f.ft, 10);
    }
    end = util_time_mono() + 10;
    while (util_time_mono() < end && !dashboard_has(&f, dash, f.n_recs, false))
        fake_trainer_poll(&f.ft, 50);
    CU_ASSERT(dashboard_has(&f, dash, 50, true));
    CU_ASSERT(f.ft.heartbeats_in > 0);

    /* The trainer goes silent: after 5 heartbeats the monitor says HELLO
     * again and fetches the whole history again (all duplicates). */
    int hellos = f.ft.hellos;
    f.ft.beating = false;
    end = util_time_mono() + 5;
    while (util_time_mono() < end && f.ft.hellos == hellos)
        fake_trainer_poll(&f.ft, 20);
    CU_ASSERT(f.ft.hellos > hellos);
    f.ft.beating = true;
    fake_append(&f, false);
    fake_append(&f, false);
    end = util_time_mono() + 10;
    while (util_time_mono() < end && !dashboard_has(&f, dash, 52, false))
        fake_trainer_poll(&f.ft, 50);
    CU_ASSERT(dashboard_has(&f, dash, 52, true));

    /* Ctrl-C: BYE to the trainer, final dashboard, exit 0. */
    CU_ASSERT_EQUAL(kill(pid, SIGINT), 0);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 5), 0);
    CU_ASSERT_EQUAL(f.ft.byes_in, 1);
    CU_ASSERT(dashboard_has(&f, dash, 52, true));
    if (CU_get_number_of_failures())
        fake_print_log("monitor output", log);
    fake_trainer_free(&f.ft);
    testing_rmtree(dir);
    free(dir);
}

static void test_once(void)
{
    struct fake f;
    fake_init(&f, 12);
    for (int i = 0; i < 30; i++)
        fake_append(&f, false);
    char *dir = testing_tmpdir(), args[4096], log[4200], dash[4200];
    snprintf(log, sizeof log, "%s/monitor.log", dir);
    snprintf(dash, sizeof dash, "%s/o/dashboard.html", dir);
    snprintf(args, sizeof args, "--connect %s --out '%s/o' --once", f.ft.work_ep, dir);
    pid_t pid = fake_spawn("tools/lejepa-monitor", args, log);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 15), 0);
    for (int i = 0; i < 5; i++)     /* let the BYE arrive */
        fake_trainer_poll(&f.ft, 20);
    CU_ASSERT_EQUAL(f.history_requests, 3);     /* 12 + 12 + 6 lines */
    CU_ASSERT_EQUAL(f.ft.byes_in, 1);
    CU_ASSERT(dashboard_has(&f, dash, 30, true));
    if (CU_get_number_of_failures())
        fake_print_log("monitor output", log);
    fake_trainer_free(&f.ft);
    testing_rmtree(dir);
    free(dir);
}

static void test_refused(void)
{
    struct fake f;
    fake_init(&f, 10);
    f.ft.refuse = "protocol version 9 is not 1";
    char *dir = testing_tmpdir(), args[4096], log[4200], err[ERR_LEN];
    snprintf(log, sizeof log, "%s/monitor.log", dir);
    snprintf(args, sizeof args, "--connect %s --out '%s/o'", f.ft.work_ep, dir);
    pid_t pid = fake_spawn("tools/lejepa-monitor", args, log);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 10), 1);
    size_t len;
    char *text = util_read_file(log, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "refused by the trainer"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "protocol version 9 is not 1"));
    free(text);
    fake_trainer_free(&f.ft);
    testing_rmtree(dir);
    free(dir);
}

static void test_from_file(void)
{
    struct fake f;
    fake_init(&f, 10);
    for (int i = 0; i < 33; i++)
        fake_append(&f, false);
    char *dir = testing_tmpdir(), path[4096], args[8192], out[4096], dash[4200];
    snprintf(path, sizeof path, "%s/fake-run", dir);
    char err[ERR_LEN];
    CU_ASSERT_FATAL(util_mkdir_p(path, err) == 0);
    snprintf(path, sizeof path, "%s/fake-run/metrics.jsonl", dir);
    FILE *fp = fopen(path, "w");
    CU_ASSERT_FATAL(fp != NULL);
    for (size_t i = 0; i < f.n_recs; i++)
        fprintf(fp, "%s\n%s", f.lines[i], i == 3 ? "{broken\n" : "");
    fprintf(fp, "%s\n", f.lines[5]);    /* a duplicate */
    fclose(fp);
    snprintf(args, sizeof args, "--from '%s'", path);
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa-monitor", args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "1 malformed lines skipped"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "33 records (1 duplicates dropped)"));
    snprintf(dash, sizeof dash, "%s/fake-run/dashboard.html", dir);
    CU_ASSERT(dashboard_has(&f, dash, 33, true));

    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa-monitor", "--every 0", out,
                                        sizeof out), 2);
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa-monitor",
                                        "--from /nonexistent/metrics.jsonl", out,
                                        sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/nonexistent/metrics.jsonl"));
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa-monitor", "--help", out,
                                        sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--connect"));
    fake_trainer_free(&f.ft);
    testing_rmtree(dir);
    free(dir);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"history pages + METRIC, reconnect, SIGINT", test_live_history_and_metrics},
        {"--once fetches every page and says BYE", test_once},
        {"REFUSE: exit 1 with the reason", test_refused},
        {"--from metrics.jsonl, bad arguments", test_from_file},
        {NULL, NULL},
    };
    return testing_run("monitor_live", cases);
}
