/*
 * train_loop.c: the step loop of lejepa-train. The main thread polls the work
 * socket, the signal pipe and the compute thread's wake pipe; the hub serves
 * clients and keeps the window of steps filled with tickets, and one
 * function (step_gate) decides when the next step may start, so receiving
 * the next batches overlaps the current step. After each step: metrics, the
 * time budget (DESIGN.md §5), checkpoints (a copy handed to the writer
 * thread, train_ckpt.h, so the next step need not wait for the disk) and,
 * when due, an eval snapshot (train_eval.c), during which no step starts.
 * Sockets and the run directory are set up by train_main.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "train.h"
#include "util.h"

static long warmup_steps(const struct train *t)
{
    double by_epochs =
        t->cfg.optim.warmup_epochs * (double)t->prog.steps_per_epoch0;
    double by_fraction = t->cfg.optim.warmup_fraction * (double)t->prog.total;
    return (long)floor(by_epochs < by_fraction ? by_epochs : by_fraction);
}

static double lr_factor(const struct train *t, uint64_t step)
{
    return adamw_schedule((long)step, t->prog.warmup, (long)t->prog.total,
                          t->cfg.optim.final_lr_ratio);
}

static double probe_factor(const struct train *t, uint64_t step)
{
    return adamw_group_factor((enum adamw_schedule)t->cfg.optim.probe_schedule,
                              (long)step, t->prog.warmup, (long)t->prog.total,
                              t->cfg.optim.final_lr_ratio);
}

void train_engine_init(struct train *t)
{
    char err[ERR_LEN];
    const struct config *c = &t->cfg;
    struct train_progress *p = &t->prog;
    /* data parallel: rank 0's dataset and checkpoint on every rank */
    train_dist_sync_dataset(t);
    train_dist_sync_resume(t);
    train_engine_build(&t->engine, c, t->data.n_classes);
    train_step_init(&t->steps, c, t->data.n_train, t->data.n_classes);
    struct train_sampler *sm = &t->steps.sampler;
    p->steps_per_epoch0 = t->data.n_train / (uint64_t)c->optim.batch;
    p->total = (uint64_t)c->optim.steps;
    p->total_fixed = !(c->optim.minutes > 0);
    if (t->resume[0]) {
        if (train_ckpt_restore(t, err) != 0)
            die("%s", err);
        train_log("resumed from %s at step %" PRIu64 " of %" PRIu64
                  " (epoch %" PRIu32 ", %" PRIu64 " samples excluded)",
                  t->resume, p->step, p->total, sm->epoch, sm->n_failed);
    } else if (train_sampler_start_epoch(sm, 0, 0, err) != 0) {
        die("%s", err);
    }
    p->warmup = warmup_steps(t);
    p->first_step = p->step;
    t->steps.trained = p->step;
    train_dist_attach(t);
    train_log(
        "model: %d parameters tensors, embedding %d, projection %d, %" PRIu32
        " classes; %" PRIu64 " steps per epoch (batch %d, the last partial "
        "batch of each epoch is dropped), warm-up %ld steps, %s %" PRIu64
        " steps",
        (int)t->engine.model.p.learn.n, t->engine.model.emb_dim,
        t->engine.model.proj_dim, t->data.n_classes, sm->steps_in_epoch,
        sm->batch, p->warmup,
        p->total_fixed ? "total" : "provisional total while timing", p->total);
    t->eval = train_eval_new(c, t->data.n_train, t->data.n_val,
                             t->data.n_classes, &t->engine.model);
    train_engine_start(&t->engine);
    if (c->run.ckpt_every > 0)
        train_ckpt_writer_start(&t->ckpt, &t->engine.model.p);
    t->engine_ready = true;
    t->iv.t0 = util_time_mono();
}

/* Snapshots of steps (from, to), the final one excluded: it is evaluation,
 * not training. */
static uint64_t snapshots_between(const struct train *t, uint64_t from,
                                  uint64_t to)
{
    int64_t every = t->cfg.eval.every;
    if (every <= 0 || to <= from + 1)
        return 0;
    return (to - 1) / (uint64_t)every - from / (uint64_t)every;
}

/* A checkpoint or metrics write failed (a full disk, a lost mount): the
 * run stops before the next step, naming the last good checkpoint, rather
 * than train on with nothing saved. A checkpoint still being written is
 * waited for first: its rotation may have deleted the one named so far,
 * and its failure is the one to report. */
static void stop_on_write_failure(struct train *t, const char *what,
                                  const char *why)
{
    char err[ERR_LEN];
    if (train_ckpt_collect(t, true, err) != 0) {
        what = "checkpoint failed";
        why = err;
    }
    char last[80] = "none yet";
    if (t->prog.have_ckpt)
        snprintf(last, sizeof last, "ckpt-%" PRIu64 ".safetensors",
                 t->prog.last_ckpt_step);
    snprintf(t->ctl.fatal, sizeof t->ctl.fatal,
             "%s: %.300s; stopping. The last good checkpoint is %s in %.100s",
             what, why, last, t->rundir.dir);
    t->ctl.fatal_code = 1;
}

/* The time budget: the first timing_steps steps ran against the provisional
 * total; their pace fixes the real one, recorded in the run's config. The
 * snapshots due before the end pause training, so their estimated time
 * (train_eval_estimate_seconds at the steps' measured rate) comes out of
 * the budget too. The first steps can run faster than the rest (the
 * loaders' queues start full): on 2026-12-08 the default recipe's first 20
 * took 1.36 s each and the rest ~1.5, and 30 minutes became 34. So the
 * count is re-fitted every TRAIN_REFIT_WINDOWS x timing_steps steps from
 * the pace of the window just ended (windows with a snapshot's pause are
 * not timed); the schedule follows the new count. */
#define TRAIN_REFIT_WINDOWS 5

static void fit_total(struct train *t, double per_step)
{
    struct train_progress *p = &t->prog;
    const uint64_t was = p->total;
    const bool refit = p->total_fixed;
    double now = util_time_mono();
    if (!refit) { /* optim.steps is the cap until it records the count */
        p->budget_s = t->cfg.optim.minutes * 60.0;
        p->steps_cap = (uint64_t)t->cfg.optim.steps;
    }
    double left = p->budget_s - (now - p->start_time);
    double more = per_step > 0 ? floor(left / per_step) : 0;
    uint64_t total = p->step + (uint64_t)(more > 0 ? more : 0);
    if (total > p->steps_cap)
        total = p->steps_cap;
    double snap = per_step > 0
        ? train_eval_estimate_seconds(
              t->eval, lejepa_step_direct_flops(&t->engine.model) / per_step)
        : 0;
    while (total > p->step &&
           (double)(total - p->step) * per_step +
                   (double)snapshots_between(t, p->step, total) * snap >
               left)
        total--;
    if (total < p->step)
        total = p->step;
    if (refit && total == was)
        return;
    char err[ERR_LEN], set[64];
    snprintf(set, sizeof set, "optim.steps=%" PRIu64, total);
    if (config_set(&t->cfg, set, err) != 0 ||
        config_set(&t->cfg, "optim.minutes=0", err) != 0)
        die("fixing the step count: %s", err);
    p->total = total;
    p->total_fixed = true;
    p->warmup = warmup_steps(t);
    free(t->config_text);
    t->config_text = config_to_string(&t->cfg);
    char werr[ERR_LEN];
    if (train_rundir_save_config(&t->rundir, t->config_text, werr) != 0)
        stop_on_write_failure(t, "config.ini write failed", werr);
    if (refit)
        train_log("time budget re-fitted at step %" PRIu64 ": %.3f s per "
                  "step, so %" PRIu64 " steps in total, not %" PRIu64
                  " (warm-up %ld); recorded in config.ini",
                  p->step, per_step, total, was, p->warmup);
    else
        train_log("time budget: %.3f s per step over %" PRIu64
                  " steps and ~%.1f s per snapshot (%" PRIu64
                  " before the end), so %" PRIu64 " steps in total (warm-up "
                  "%ld); recorded in config.ini",
                  per_step, p->step, snap, snapshots_between(t, p->step, total),
                  total, p->warmup);
    struct msg_value v[] = {{"steps_total", (double)total},
                            {"step_s", per_step}};
    train_metrics_write(&t->rundir, MSG_SOURCE_SYSTEM, p->step,
                        t->steps.sampler.epoch, v, 2, NULL);
}

/* After each step (rank 0): the budget's first fit once timing_steps steps
 * are done, its re-fits at the end of each window after that. */
static void time_budget(struct train *t)
{
    struct train_progress *p = &t->prog;
    const uint64_t timing = (uint64_t)t->cfg.optim.timing_steps;
    double now = util_time_mono();
    if (!p->total_fixed) {
        if (p->step < timing)
            return;
        fit_total(t,
                  p->step > 1 ? (now - p->timing_t0) / (double)(p->step - 1)
                              : now - p->start_time);
    } else {
        if (p->budget_s <= 0 || p->step >= p->total ||
            p->step - p->refit_step < TRAIN_REFIT_WINDOWS * timing)
            return;
        if (p->pause_step < p->refit_step) /* no snapshot paused the window */
            fit_total(t,
                      (now - p->refit_t0) / (double)(p->step - p->refit_step));
    }
    p->refit_t0 = now; /* the next window */
    p->refit_step = p->step;
}

/* "1h02m03s" (or "4m05s", "6s") into out. */
static void format_span(char *out, size_t n, double s)
{
    long v = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (v >= 3600)
        snprintf(out, n, "%ldh%02ldm%02lds", v / 3600, v / 60 % 60, v % 60);
    else if (v >= 60)
        snprintf(out, n, "%ldm%02lds", v / 60, v % 60);
    else
        snprintf(out, n, "%lds", v);
}

/* Elapsed training time of this process and the time left at its pace
 * ("ETA ...?" while a time budget is still being measured). */
static void progress_text(const struct train *t, char *out, size_t n)
{
    const struct train_progress *p = &t->prog;
    double elapsed = p->start_time > 0 ? util_time_mono() - p->start_time : 0;
    uint64_t done = p->step - p->first_step;
    char a[32], b[32];
    format_span(a, sizeof a, elapsed);
    if (done == 0 || p->step >= p->total) {
        snprintf(out, n, "elapsed %s", a);
        return;
    }
    format_span(b, sizeof b,
                elapsed / (double)done * (double)(p->total - p->step));
    snprintf(out, n, "elapsed %s, ETA %s%s", a, b, p->total_fixed ? "" : "?");
}

static void write_metrics(struct train *t, uint32_t epoch,
                          const struct train_step_result *r)
{
    struct train_interval *iv = &t->iv;
    double now = util_time_mono();
    double dt = now - iv->t0;
    double ips = dt > 0 ? (double)iv->images / dt : 0;
    double probe_loss =
        iv->probe_steps ? iv->probe_loss_sum / (double)iv->probe_steps : NAN;
    double probe_acc = iv->probe_total
        ? (double)iv->probe_correct / (double)iv->probe_total
        : NAN;
    double nan = NAN;
    const struct lejepa_losses *L = &r->losses;
    int loaders = train_net_count(&t->net, MSG_ROLE_LOADER);
    if (t->dist.on) /* every rank's, as of the last exchange */
        for (int q = 1; q < t->dist.d.world; q++)
            loaders += t->dist.x.rank_loaders[q];
    uint64_t failures = t->steps.sampler.n_failed;
    struct msg_value v[] = {
        {"loss", r->skipped ? nan : L->loss},
        {"inv", r->skipped ? nan : L->inv},
        {"sigreg", r->skipped ? nan : L->sigreg},
        {"lr", t->cfg.optim.lr * r->lr_factor},
        {"images_per_s", ips},
        {"probe_loss", probe_loss},
        {"probe_acc_train", probe_acc},
        {"loaders", (double)loaders},
        {"failures", (double)failures},
        {"samples", (double)r->n},
        {"bad_messages", (double)t->net.bad_messages},
        {"refused",
         (double)(t->net.refusals + train_net_key_refusals(&t->net))},
        {"clients_dropped", (double)t->net.clients_dropped},
        {"tickets_expired", (double)t->tickets.expired},
        {"tickets_hedged", (double)t->tickets.hedged},
        {"results_limited", (double)t->net.results_limited},
    };
    char extra[64];
    snprintf(extra, sizeof extra, ",\"batch_hash\":\"%016" PRIx64 "\"",
             r->hash);
    train_metrics_write(&t->rundir, MSG_SOURCE_TRAIN, t->prog.step, epoch, v,
                        (int)(sizeof v / sizeof v[0]), extra);
    char when[96];
    progress_text(t, when, sizeof when);
    train_log("step %" PRIu64 "/%" PRIu64 " epoch %" PRIu32
              " loss %.5f inv %.5f "
              "sigreg %.5f lr %.3g probe_acc %.3f %.1f img/s loaders %d "
              "failures %" PRIu64 " (%s)",
              t->prog.step, t->prog.total, epoch, v[0].value, v[1].value,
              v[2].value, v[3].value, probe_acc, ips, loaders, failures, when);
    uint64_t skipped = iv->skipped_steps;
    *iv = (struct train_interval){.t0 = now, .skipped_steps = skipped};
}

/* Called once the compute thread is done with step t->prog.step. */
static void step_finish(struct train *t, struct train_slot *s)
{
    struct train_progress *p = &t->prog;
    struct train_interval *iv = &t->iv;
    uint32_t epoch = s->epoch;
    const struct train_step_result *r = &t->steps.job.result;
    if (t->dist.on) {
        train_dist_apply(t);
        if (r->ended) {
            train_step_release(s);
            return;
        }
        if (!train_dist_root(&t->dist)) {
            /* rank 0 fixes the step count (a time budget) */
            p->total = (uint64_t)t->dist.x.total0;
            p->total_fixed = t->dist.x.fixed0 > 0;
            p->warmup = warmup_steps(t);
        }
    }
    if (!r->finite) {
        snprintf(t->ctl.fatal, sizeof t->ctl.fatal,
                 "%s; stopping, the last good "
                 "checkpoint is kept",
                 r->err);
        t->ctl.fatal_code = 3;
        write_metrics(t, epoch, r);
        train_step_release(s);
        return;
    }
    if (r->skipped) {
        iv->skipped_steps++;
        train_log("step %" PRIu64 " skipped: only %d of its %d samples loaded",
                  p->step + 1, r->n, t->steps.sampler.batch);
    } else {
        iv->images += (uint64_t)r->n;
        if (r->losses.probe_total > 0) {
            iv->probe_loss_sum += r->losses.probe_loss;
            iv->probe_steps++;
        }
        iv->probe_correct += r->losses.probe_correct;
        iv->probe_total += r->losses.probe_total;
    }
    p->step++;
    t->steps.trained = p->step;
    if (p->step == 1)
        p->timing_t0 = util_time_mono();
    if (p->step % (uint64_t)t->cfg.run.log_every == 0 || p->step == p->total)
        write_metrics(t, epoch, r);
    train_step_release(s);
    if (train_dist_root(&t->dist))
        time_budget(t);
    if (t->ctl.fatal[0])
        return;
    /* the copy is of step p->step's weights: the compute thread is idle
     * until the next step is submitted */
    char err[ERR_LEN];
    if (p->total_fixed && t->cfg.run.ckpt_every > 0 && p->step < p->total &&
        p->step % (uint64_t)t->cfg.run.ckpt_every == 0 &&
        train_ckpt_begin(t, err) != 0) {
        stop_on_write_failure(t, "checkpoint failed", err);
        return;
    }
    if (train_eval_due(t->eval, p->step,
                       p->total_fixed && p->step == p->total)) {
        train_eval_begin(t->eval, p->step, epoch);
        p->pause_step = p->step;
    }
}

/* At the end of a run, evaluators are still scoring the final snapshot:
 * wait until each has sent a RESULT for the last step and none came for
 * TRAIN_RESULT_QUIET_S (one RESULT per task), at most TRAIN_RESULT_WAIT_S. */
static bool final_results_pending(struct train *t)
{
    struct train_control *ctl = &t->ctl;
    if (t->cfg.eval.every < 0 ||
        train_net_count(&t->net, MSG_ROLE_EVALUATOR) == 0)
        return false;
    double now = util_time_mono();
    if (ctl->final_wait_from == 0) {
        ctl->final_wait_from = now;
        train_log(
            "waiting up to %d s for the evaluators' results of step %" PRIu64,
            TRAIN_RESULT_WAIT_S, t->prog.step);
    }
    if (now - ctl->final_wait_from > TRAIN_RESULT_WAIT_S) {
        train_log("evaluators' results of step %" PRIu64 " did not all arrive "
                  "within %d s",
                  t->prog.step, TRAIN_RESULT_WAIT_S);
        return false;
    }
    /* an evaluator that joined after the final snapshot went out never got
     * it (PUB does not replay): only the earlier ones are waited for */
    double since = train_eval_published_at(t->eval);
    return !(train_net_evaluators_done(&t->net, t->prog.step, since) &&
             now - ctl->last_result_at > TRAIN_RESULT_QUIET_S);
}

/* True while training waits for eval.wait_evaluators evaluators to join
 * (at most TRAIN_EVALS_WAIT_S from the first call; logs the start and the
 * end of the wait). */
static bool awaiting_evaluators(struct train *t)
{
    struct train_control *ctl = &t->ctl;
    const int want = (int)t->cfg.eval.wait_evaluators;
    /* before this process's first step: a resumed run waits too */
    if (ctl->evals_wait_over || want <= 0 || t->prog.step > t->prog.first_step)
        return false;
    const int have = train_net_count(&t->net, MSG_ROLE_EVALUATOR);
    const double now = util_time_mono();
    if (ctl->evals_wait_t0 == 0) {
        ctl->evals_wait_t0 = now;
        if (have < want)
            train_log("waiting up to %d s for %d evaluator(s) before the first "
                      "step (eval.wait_evaluators)",
                      TRAIN_EVALS_WAIT_S, want);
    }
    if (have >= want || now - ctl->evals_wait_t0 > TRAIN_EVALS_WAIT_S) {
        ctl->evals_wait_over = true;
        if (have < want)
            train_log("only %d of %d evaluator(s) joined in %d s: training "
                      "starts without the others",
                      have, want, TRAIN_EVALS_WAIT_S);
        return false;
    }
    return true;
}

enum step_gate { GATE_WAIT, GATE_GO, GATE_END };

/* The one decision whether the next step may start, with the compute
 * thread free and no snapshot active: the run stops (a signal, the last
 * step done and the evaluators' final results in, no next epoch), waits
 * (its batches are not all in, evaluators still joining or scoring) or
 * goes with *ready. */
static enum step_gate step_gate(struct train *t, struct train_slot **ready,
                                int *code)
{
    struct train_control *ctl = &t->ctl;
    *code = 0;
    if (ctl->stopping || t->dist.over)
        return GATE_END;
    if (t->prog.step >= t->prog.total)
        return final_results_pending(t) ? GATE_WAIT : GATE_END;
    if (t->steps.sampler_err[0] && t->prog.step == t->steps.next_open) {
        snprintf(ctl->fatal, sizeof ctl->fatal, "%s", t->steps.sampler_err);
        *code = ctl->fatal_code = 1;
        return GATE_END;
    }
    *ready = train_step_ready(&t->steps, t->prog.step);
    if (!*ready || awaiting_evaluators(t))
        return GATE_WAIT;
    return GATE_GO;
}

/* One turn of the main loop once the engine exists; returns -1 to go on or
 * the exit status. */
static int turn(struct train *t)
{
    struct train_slot *cur = train_step_slot(&t->steps, t->prog.step);
    bool computing = cur && cur->computing;
    if (computing && train_engine_idle(&t->engine)) {
        step_finish(t, cur);
        computing = false;
    }
    /* a checkpoint write that failed while the step computed: no next step */
    char err[ERR_LEN];
    if (!t->ctl.fatal[0] && train_ckpt_collect(t, false, err) != 0)
        stop_on_write_failure(t, "checkpoint failed", err);
    const struct train_sampler *sm = &t->steps.sampler;
    if ((double)sm->n_failed >
            t->cfg.limits.max_excluded * (double)sm->n_train &&
        !t->ctl.fatal[0]) {
        snprintf(t->ctl.fatal, sizeof t->ctl.fatal,
                 "%" PRIu64 " of %" PRIu64 " training samples are excluded "
                 "after decode failures, more than limits.max_excluded = %g: "
                 "stopping (check the dataset's files; the failures are in "
                 "the log)",
                 sm->n_failed, sm->n_train, t->cfg.limits.max_excluded);
        t->ctl.fatal_code = 1;
    }
    if (t->rundir.write_failed[0] && !t->ctl.fatal[0])
        stop_on_write_failure(t, "metrics write failed",
                              t->rundir.write_failed);
    if (t->ctl.fatal[0])
        return t->ctl.fatal_code;
    if (computing)
        return -1;
    if (train_eval_active(t->eval)) {
        /* a snapshot pauses training until it is published */
        if (!t->ctl.stopping) {
            /* the pause is not training time: images_per_s leaves it out */
            t->iv.t0 +=
                train_eval_poll(t->eval, &t->engine, &t->net, &t->rundir);
            return -1;
        }
        train_eval_abandon(t->eval, &t->engine, "the run is stopping");
    }
    struct train_slot *ready = NULL;
    int code;
    switch (step_gate(t, &ready, &code)) {
    case GATE_END:
        return code;
    case GATE_GO:
        /* a time budget runs from the first step, not from start-up */
        if (t->prog.start_time == 0)
            t->prog.start_time = util_time_mono();
        train_dist_claims(t, false, lr_factor(t, t->prog.step),
                          probe_factor(t, t->prog.step));
        train_step_submit(&t->steps, &t->engine, ready,
                          lr_factor(t, t->prog.step),
                          probe_factor(t, t->prog.step), &t->dist.x);
        return -1;
    case GATE_WAIT:
        return -1;
    }
    return -1;
}

static int loop(struct train *t, volatile sig_atomic_t *signals)
{
    struct train_control *ctl = &t->ctl;
    for (;;) {
        if (*signals >= 2) {
            train_log("second signal: exiting without a checkpoint");
            ctl->interrupted = true;
            if (t->dist.on) /* the others may wait in an exchange */
                dist_abort(&t->dist.d, 130);
            return 130;
        }
        if (*signals && !ctl->stopping) {
            ctl->stopping = true;
            ctl->interrupted = true;
            train_log("stopping: finishing the current step, then a final "
                      "checkpoint");
            if (t->dist.on && train_dist_root(&t->dist) && t->engine_ready &&
                !train_engine_idle(&t->engine)) {
                /* mpirun ends every rank when one dies: this may be the
                 * last line */
                if (t->prog.have_ckpt)
                    train_log("(several ranks: if one died, the job ends "
                              "first; the last checkpoint is ckpt-%" PRIu64
                              ".safetensors: mpirun ... lejepa-train "
                              "--resume %s continues it)",
                              t->prog.last_ckpt_step, t->rundir.dir);
                else
                    train_log("(several ranks: if one died, the job ends "
                              "first, before any checkpoint)");
            }
        }
        int wake = train_engine_wake_fd(&t->engine);
        int sig_fd = util_stop_fd();
        zmq_pollitem_t items[3] = {
            {.socket = t->net.router, .events = ZMQ_POLLIN},
            {.fd = sig_fd, .events = ZMQ_POLLIN},
            {.fd = wake >= 0 ? wake : sig_fd, .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 3, TRAIN_POLL_MS) < 0 && zmq_errno() != EINTR)
            die("zmq_poll: %s", zmq_strerror(zmq_errno()));
        util_stop_drain();
        train_hub_serve(t);
        /* the engine is built where the dataset becomes known: at start-up
         * (--data, --resume) or at the first loader's HELLO */
        if (!t->engine_ready) {
            if (ctl->stopping)
                return 0;
            continue;
        }
        struct train_dist *td = &t->dist;
        if (td->end_out) {
            /* this rank told the others that the run ends */
            if (!train_engine_idle(&t->engine))
                continue;
            train_dist_apply(t);
            /* another rank's error, learnt in this last exchange */
            if (td->end_code == 0 && t->ctl.fatal[0])
                td->end_code = t->ctl.fatal_code;
            return td->end_code;
        }
        train_dist_rebalance(t);
        int code = turn(t);
        if (code >= 0 && td->on && !td->over) {
            /* the other ranks wait for this one in their next exchange:
             * one more, to tell them the run ends (after a step still
             * computing, which turn() finishes first) */
            if (!train_engine_idle(&t->engine))
                continue;
            train_dist_claims(t, true, 0, 0);
            train_step_submit_end(&t->steps, &t->engine, &td->x);
            td->end_out = true;
            td->end_code = code;
            continue;
        }
        if (code >= 0)
            return code;
        if (!ctl->fatal[0])
            train_step_open(&t->steps, t->prog.total);
        train_hub_issue(t);
    }
}

int train_loop_run(struct train *t, volatile sig_atomic_t *signals)
{
    int code = loop(t, signals);
    /* a checkpoint still being written is part of the run's outcome: the
     * end waits for it, and its failure stops the run as it would have a
     * step later */
    char err[ERR_LEN];
    if (train_ckpt_collect(t, true, err) != 0) {
        if (!t->ctl.fatal[0])
            stop_on_write_failure(t, "checkpoint failed", err);
        else
            train_log("checkpoint failed: %s", err);
        if (code == 0)
            code = t->ctl.fatal_code;
    }
    return code;
}
