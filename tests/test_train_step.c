/*
 * test_train_step.c: the training tickets' state machine (trainer/
 * train_step.c, train_tickets.c) driven by hand, without sockets or an
 * engine (both stubbed below): loaders are registry entries, TICKETs are
 * recorded, BATCHes are built here. The sequences a review found:
 *   - a ticket whose decode failure A doubts and whose retry C fails for
 *     the environment still goes out again (it used to wait forever);
 *   - a ticket whose samples two hedged copies brought between them, each
 *     with a failure for a sample the other delivered, is done;
 *   - a partial copy that reports decode failures for samples it was not
 *     sent (and does not hold) excludes nothing;
 *   - an answer that leaves out a sample it was sent is refused;
 *   - partial copies fill a ticket between them, each sent only its part.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "msg.h"
#include "testing.h"
#include "train_net.h"
#include "train_step.h"
#include "train_tickets.h"
#include "util.h"

/* ---- stubs: the network records, the engine does nothing ---- */

static int sent_n;                 /* TICKETs sent */
static uint32_t sent_size[64];     /* their index counts */
static const char *sent_to[64];
static bool sent_eval_view[64];    /* their eval_view */
static int bad_n;                  /* bad messages */

int train_net_send_client(struct train_net *n, struct train_client *c,
                          const struct msg *m)
{
    (void)n;
    if (sent_n < 64) {
        sent_size[sent_n] = m->ticket.n;
        sent_to[sent_n] = c->name;
        sent_eval_view[sent_n] = m->ticket.eval_view;
    }
    sent_n++;
    return 0;
}

void train_net_bad_message(struct train_net *n, const char *who, const char *why)
{
    (void)n;
    fprintf(stderr, "  bad message from %s: %s\n", who, why);
    bad_n++;
}

int train_net_count(const struct train_net *n, enum msg_role role)
{
    int k = 0;
    for (int i = 0; i < n->n_clients; i++)
        k += n->clients[i]->role == role;
    return k;
}

void train_engine_submit(struct train_engine *e,
                         void (*fn)(struct train_engine *, void *), void *arg)
{
    (void)e;
    (void)fn;
    (void)arg;
}

bool train_engine_idle(struct train_engine *e)
{
    (void)e;
    return true;
}

void train_net_free_client(struct train_client *c)
{
    free(c->hold.held);
    free(c->hold.sent);
    free(c->held);
    free(c);
}

/* ---- the fixture ---- */

#define N_TRAIN 64

static struct config cfg;
static uint8_t pixels[1 << 16], eval_pixels[1 << 16];
/* Whether answer() sends the eval view after the global views (the run's
 * tickets ask for it: optim.probe_views = eval and a probe). */
static bool with_eval_view;

struct bench {
    struct train_step st;
    struct train_tickets tk;
    struct train_net n;
    struct train_slot *s;
    uint64_t *ix; /* step 0's 4 samples (one ticket) */
};

static struct train_client *loader(struct bench *b, const char *name, uint32_t credit,
                                   const int *held_positions, int n_held)
{
    struct train_client *c = xcalloc(1, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->client_id = (uint64_t)b->n.n_clients + 1;
    c->role = MSG_ROLE_LOADER;
    c->hold.credit = credit;
    c->hold.held = xcalloc(credit, sizeof *c->hold.held);
    c->hold.sent = xcalloc(credit, sizeof *c->hold.sent);
    if (held_positions) {
        c->held = xcalloc(N_TRAIN / 8 + 1, 1);
        for (int i = 0; i < n_held; i++) {
            uint64_t x = b->ix[held_positions[i]];
            c->held[x / 8] |= (uint8_t)(1u << (x % 8));
        }
    }
    b->n.clients[b->n.n_clients++] = c;
    return c;
}

static void bench_init_probe(struct bench *b, enum config_probe_views probe,
                             uint32_t classes)
{
    memset(b, 0, sizeof *b);
    config_defaults(&cfg);
    cfg.optim.probe_views = (int)probe;
    cfg.optim.batch = 4;
    cfg.run.ticket_size = 4;
    cfg.views.global_size = 4;
    cfg.views.global_count = 1;
    cfg.views.local_count = 0;
    cfg.views.channels = 1;
    with_eval_view = cfg.optim.probe_views == CONFIG_PROBE_VIEWS_EVAL && classes >= 2;
    train_step_init(&b->st, &cfg, N_TRAIN, classes);
    train_step_open(&b->st, 1);
    b->s = train_step_slot(&b->st, 0);
    b->ix = b->s->indices;
    b->tk.timeout_s = 60;
    sent_n = bad_n = 0;
}

static void bench_init(struct bench *b)
{
    bench_init_probe(b, CONFIG_PROBE_VIEWS_EVAL, 2);
}

static void bench_free(struct bench *b)
{
    for (int i = 0; i < b->n.n_clients; i++)
        train_net_free_client(b->n.clients[i]);
    train_step_free(&b->st);
}

/* c answers ticket 1 (step 0): samples at positions ok[0..nok), failures
 * at positions fail[0..nf) of class cls. Returns the hub's verdict. */
static enum train_answer answer(struct bench *b, struct train_client *c, const int *ok,
                                int nok, const int *fail, int nf, enum msg_fail_class cls)
{
    uint64_t idx[4];
    int32_t labels[4] = {0};
    struct msg_failure f[4];
    for (int i = 0; i < nok; i++)
        idx[i] = b->ix[ok[i]];
    for (int i = 0; i < nf; i++)
        f[i] = (struct msg_failure){b->ix[fail[i]], "train/x.png", "test", cls};
    struct msg_group g[2] = {{.views = 1, .c = 1, .h = 4, .w = 4, .pixels = pixels},
                             {.views = 1, .c = 1, .h = 4, .w = 4, .pixels = eval_pixels}};
    struct msg_batch m = {.ticket = 1, .step = 0, .epoch = b->s->epoch,
                          .split = MSG_SPLIT_TRAIN, .work = MSG_WORK_TRAIN,
                          .n = (uint32_t)nok, .indices = idx, .labels = labels,
                          .n_groups = with_eval_view ? 2 : 1, .groups = g,
                          .n_failures = (uint32_t)nf, .failures = f};
    double sent;
    bool held = train_tickets_drop(&b->tk, c, 1, &sent);
    return train_step_accept(&b->st, &b->tk, &b->n, c, &m, held);
}

static bool done(const struct bench *b)
{
    return b->s->tstate[0] == TICKET_DONE && b->s->tickets_done == 1;
}

static int excluded(const struct bench *b)
{
    return (int)b->st.sampler.n_failed;
}

/* ---- the cases ---- */

static void test_doubt_then_env(void)
{
    struct bench b;
    bench_init(&b);
    struct train_client *A = loader(&b, "A", 4, NULL, 0), *C = loader(&b, "C", 4, NULL, 0);
    train_step_issue(&b.st, &b.tk, &b.n);
    CU_ASSERT_EQUAL_FATAL(sent_n, 1);
    struct train_client *first = strcmp(sent_to[0], "A") == 0 ? A : C;
    struct train_client *second = first == A ? C : A;
    const int rest[] = {1, 2, 3}, x[] = {0};
    CU_ASSERT_EQUAL(answer(&b, first, rest, 3, x, 1, MSG_FAIL_DECODE), TRAIN_ANSWER_TAKEN);
    train_step_issue(&b.st, &b.tk, &b.n);
    CU_ASSERT_EQUAL_FATAL(sent_n, 2);
    CU_ASSERT_STRING_EQUAL(sent_to[1], second->name); /* the second opinion */
    CU_ASSERT_EQUAL(sent_size[1], 1);                  /* only what is pending */
    CU_ASSERT_EQUAL(answer(&b, second, NULL, 0, x, 1, MSG_FAIL_ENV), TRAIN_ANSWER_TAKEN);
    /* both are "shunned" now: the ticket must still go out */
    train_step_issue(&b.st, &b.tk, &b.n);
    CU_ASSERT_EQUAL(sent_n, 3);
    CU_ASSERT_EQUAL(b.s->tstate[0], TICKET_OUT);
    CU_ASSERT_EQUAL(excluded(&b), 0);
    bench_free(&b);
}

static void test_hedged_copies(void)
{
    struct bench b;
    bench_init(&b);
    struct train_client *A = loader(&b, "A", 4, NULL, 0), *B = loader(&b, "B", 4, NULL, 0);
    train_step_issue(&b.st, &b.tk, &b.n);
    /* a second copy at the other loader, as hedge() sends one */
    struct msg_ticket t = {.ticket = 1, .step = 0, .epoch = b.s->epoch, .n = 4, .indices = b.ix};
    struct train_client *other = strcmp(sent_to[0], "A") == 0 ? B : A;
    train_tickets_send(&b.n, other, &t);
    struct train_client *one = other == A ? B : A;
    const int b012[] = {0, 1, 2}, f3[] = {3}, a123[] = {1, 2, 3}, f0[] = {0};
    CU_ASSERT_EQUAL(answer(&b, other, b012, 3, f3, 1, MSG_FAIL_ENV), TRAIN_ANSWER_TAKEN);
    CU_ASSERT_FALSE(done(&b));
    /* its env failure on sample 0 is moot: sample 0 is in place */
    CU_ASSERT_EQUAL(answer(&b, one, a123, 3, f0, 1, MSG_FAIL_ENV), TRAIN_ANSWER_TAKEN);
    CU_ASSERT(done(&b));
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(b.s->ok[i], 1);
    bench_free(&b);
}

static void test_partial_liar(void)
{
    struct bench b;
    bench_init(&b);
    const int all_but_3[] = {0, 1, 2}, only_3[] = {3};
    struct train_client *A = loader(&b, "A", 4, all_but_3, 3);
    struct train_client *H = loader(&b, "H", 4, only_3, 1);
    /* the ticket goes to one, then the rest to the other, each sent only
     * its part; H delivers its sample and calls A's three undecodable */
    const int p012[] = {0, 1, 2}, p3[] = {3};
    for (int round = 0; round < 2; round++) {
        train_step_issue(&b.st, &b.tk, &b.n);
        CU_ASSERT_EQUAL_FATAL(sent_n, round + 1);
        bool to_a = strcmp(sent_to[round], "A") == 0;
        CU_ASSERT_EQUAL(sent_size[round], to_a ? 3u : 1u);
        CU_ASSERT_EQUAL(to_a ? answer(&b, A, p012, 3, NULL, 0, MSG_FAIL_DECODE)
                             : answer(&b, H, p3, 1, p012, 3, MSG_FAIL_DECODE),
                        TRAIN_ANSWER_TAKEN);
        CU_ASSERT_EQUAL(done(&b), round == 1);
    }
    CU_ASSERT(done(&b));
    CU_ASSERT_EQUAL(excluded(&b), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(b.s->ok[i], 1);
    bench_free(&b);
}

static void test_omitted(void)
{
    struct bench b;
    bench_init(&b);
    struct train_client *A = loader(&b, "A", 4, NULL, 0);
    train_step_issue(&b.st, &b.tk, &b.n);
    const int p012[] = {0, 1, 2};
    CU_ASSERT_EQUAL(answer(&b, A, p012, 3, NULL, 0, MSG_FAIL_DECODE), TRAIN_ANSWER_BAD);
    CU_ASSERT_EQUAL(bad_n, 1);
    CU_ASSERT_FALSE(done(&b));
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(b.s->ok[i], 0); /* nothing of a refused answer kept */
    bench_free(&b);
}

/* The eval-view probe asks for each sample's eval view: the tickets say so,
 * its pixels land in the slot's group 2 at the samples' places, and an
 * answer without it is refused; a probe on the global views, or a dataset
 * of one class (no probe), asks for none. */
static void test_eval_view(void)
{
    struct bench b;
    bench_init(&b);
    CU_ASSERT_FATAL(with_eval_view);
    struct train_client *A = loader(&b, "A", 4, NULL, 0);
    train_step_issue(&b.st, &b.tk, &b.n);
    CU_ASSERT_EQUAL_FATAL(sent_n, 1);
    CU_ASSERT(sent_eval_view[0]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b.s->pixels[2]);
    const int p0123[] = {0, 1, 2, 3};
    with_eval_view = false;
    CU_ASSERT_EQUAL(answer(&b, A, p0123, 4, NULL, 0, MSG_FAIL_DECODE), TRAIN_ANSWER_BAD);
    CU_ASSERT_EQUAL(bad_n, 1);
    CU_ASSERT_FALSE(done(&b));
    with_eval_view = true;
    for (int i = 0; i < 4 * 16; i++) {
        pixels[i] = (uint8_t)i;
        eval_pixels[i] = (uint8_t)(200 - i);
    }
    train_step_issue(&b.st, &b.tk, &b.n);
    CU_ASSERT_EQUAL(answer(&b, A, p0123, 4, NULL, 0, MSG_FAIL_DECODE), TRAIN_ANSWER_TAKEN);
    CU_ASSERT(done(&b));
    for (int i = 0; i < 4; i++) {
        CU_ASSERT(memcmp(b.s->pixels[0] + i * 16, pixels + i * 16, 16) == 0);
        CU_ASSERT(memcmp(b.s->pixels[2] + i * 16, eval_pixels + i * 16, 16) == 0);
    }
    bench_free(&b);

    bench_init_probe(&b, CONFIG_PROBE_VIEWS_GLOBAL, 2);
    CU_ASSERT_FALSE(with_eval_view);
    A = loader(&b, "A", 4, NULL, 0);
    train_step_issue(&b.st, &b.tk, &b.n);
    CU_ASSERT_EQUAL_FATAL(sent_n, 1);
    CU_ASSERT_FALSE(sent_eval_view[0]);
    CU_ASSERT_PTR_NULL(b.s->pixels[2]);
    CU_ASSERT_EQUAL(answer(&b, A, p0123, 4, NULL, 0, MSG_FAIL_DECODE), TRAIN_ANSWER_TAKEN);
    CU_ASSERT(done(&b));
    bench_free(&b);
    /* one class: the model has no probe (train_probe_classes), so no eval
     * view is asked for either */
    bench_init_probe(&b, CONFIG_PROBE_VIEWS_EVAL, 1);
    CU_ASSERT_EQUAL(train_probe_classes(1), 0);
    CU_ASSERT_EQUAL(b.st.job.views[2], 0);
    CU_ASSERT_PTR_NULL(b.s->pixels[2]);
    bench_free(&b);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"doubt, then an env failure: the ticket goes out again", test_doubt_then_env},
        {"hedged copies fill a ticket between them", test_hedged_copies},
        {"a partial copy cannot exclude what it was not sent", test_partial_liar},
        {"an answer that leaves a sample out is refused", test_omitted},
        {"the eval view: asked for, placed, required", test_eval_view},
        {NULL, NULL},
    };
    return testing_run_named("train_step", all, argc, argv);
}
