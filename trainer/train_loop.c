/*
 * train_loop.c: the step loop of lejepa-train. The main thread polls the work
 * socket, the signal pipe and the compute thread's wake pipe; it serves
 * clients, keeps the window of steps filled with tickets and hands a step to
 * the compute thread as soon as all its tickets are back, so receiving the
 * next batches overlaps the current step. After each step: metrics, the time
 * budget (DESIGN.md §5), checkpoints and, when due, an eval snapshot
 * (train_eval.c), during which no step starts. Sockets and the run directory
 * are set up by train_main.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "model_config.h"
#include "train_state.h"
#include "util.h"

static long warmup_steps(const struct train *t)
{
    double by_epochs = t->cfg.optim.warmup_epochs * (double)t->steps_per_epoch0;
    double by_fraction = t->cfg.optim.warmup_fraction * (double)t->total;
    return (long)floor(by_epochs < by_fraction ? by_epochs : by_fraction);
}

static double lr_factor(const struct train *t, uint64_t step)
{
    return adamw_schedule((long)step, t->warmup, (long)t->total,
                          t->cfg.optim.final_lr_ratio);
}

/* Builds the model once the dataset (hence the class count) is known. */
void train_engine_init(struct train *t)
{
    char err[ERR_LEN];
    const struct config *c = &t->cfg;
    struct lejepa_config lc;
    if (model_config_resolve(&lc, c, (int)t->data.n_classes, err) != 0)
        die("%s", err);
    if (lejepa_init(&t->model, &lc, err) != 0)
        die("%s", err);
    adamw_init(&t->opt, c->optim.beta1, c->optim.beta2, c->optim.eps);
    t->opt.group[PARAMS_GROUP_ENCODER] =
        (struct adamw_group){c->optim.lr, c->optim.weight_decay};
    t->opt.group[PARAMS_GROUP_PROBE] =
        (struct adamw_group){c->optim.probe_lr, c->optim.probe_weight_decay};
    train_sampler_init(&t->sampler, c->run.seed, t->data.n_train,
                       (int)c->optim.batch, (int)c->run.ticket_size);
    t->steps_per_epoch0 = t->data.n_train / (uint64_t)c->optim.batch;
    t->total = (uint64_t)c->optim.steps;
    t->total_fixed = !(c->optim.minutes > 0);
    if (t->resume[0]) {
        if (train_ckpt_restore(t, err) != 0)
            die("%s", err);
        train_log(t, "resumed from %s at step %" PRIu64 " of %" PRIu64
                  " (epoch %" PRIu32 ", %" PRIu64 " samples excluded)", t->resume,
                  t->step, t->total, t->sampler.epoch, t->sampler.n_failed);
    } else if (train_sampler_start_epoch(&t->sampler, 0, 0, err) != 0) {
        die("%s", err);
    }
    t->warmup = warmup_steps(t);
    train_log(t, "model: %d parameters tensors, embedding %d, projection %d, "
              "%" PRIu32 " classes; %" PRIu64 " steps per epoch (batch %d, the "
              "last partial batch of each epoch is dropped), warm-up %ld steps, "
              "%s %" PRIu64 " steps", (int)t->model.p.learn.n, t->model.emb_dim,
              t->model.proj_dim, t->data.n_classes, t->sampler.steps_in_epoch,
              t->sampler.batch, t->warmup,
              t->total_fixed ? "total" : "provisional total while timing",
              t->total);
    train_slots_init(t);
    train_eval_init(t);
    train_compute_start(t);
    t->engine_ready = true;
    t->interval_t0 = util_time_mono();
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

/* The time budget: the first timing_steps steps ran against the provisional
 * total; their pace fixes the real one, recorded in the run's config. The
 * snapshots due before the end pause training, so their estimated time
 * (train_eval_estimate_seconds at the steps' measured rate) comes out of
 * the budget too. */
static void fix_total(struct train *t)
{
    double now = util_time_mono();
    double per_step = t->step > 1 ? (now - t->timing_t0) / (double)(t->step - 1)
                                  : now - t->start_time;
    double left = t->cfg.optim.minutes * 60.0 - (now - t->start_time);
    double more = per_step > 0 ? floor(left / per_step) : 0;
    uint64_t total = t->step + (uint64_t)(more > 0 ? more : 0);
    if (total > (uint64_t)t->cfg.optim.steps)
        total = (uint64_t)t->cfg.optim.steps;
    double snap = per_step > 0 ? train_eval_estimate_seconds(
                      t, 3.0 * lejepa_forward_flops(&t->model) / per_step) : 0;
    while (total > t->step &&
           (double)(total - t->step) * per_step +
                   (double)snapshots_between(t, t->step, total) * snap > left)
        total--;
    if (total < t->step)
        total = t->step;
    char err[ERR_LEN], set[64];
    snprintf(set, sizeof set, "optim.steps=%" PRIu64, total);
    if (config_set(&t->cfg, set, err) != 0 ||
        config_set(&t->cfg, "optim.minutes=0", err) != 0)
        die("fixing the step count: %s", err);
    t->total = total;
    t->total_fixed = true;
    t->warmup = warmup_steps(t);
    free(t->config_text);
    t->config_text = config_to_string(&t->cfg);
    train_save_config(t);
    train_log(t, "time budget: %.3f s per step over %" PRIu64 " steps and "
              "~%.1f s per snapshot (%" PRIu64 " before the end), so %" PRIu64
              " steps in total (warm-up %ld); recorded in config.ini",
              per_step, t->step, snap, snapshots_between(t, t->step, total),
              total, t->warmup);
    struct msg_value v[] = {{"steps_total", (double)total}, {"step_s", per_step}};
    train_metrics_write(t, MSG_SOURCE_SYSTEM, t->step, t->sampler.epoch, v, 2, NULL);
}

static void write_metrics(struct train *t, const struct train_slot *s,
                          const struct train_step_result *r)
{
    double now = util_time_mono();
    double dt = now - t->interval_t0;
    double ips = dt > 0 ? (double)t->interval_images / dt : 0;
    double probe_loss = t->probe_steps ? t->probe_loss_sum / (double)t->probe_steps : NAN;
    double probe_acc = t->probe_total ? (double)t->probe_correct / (double)t->probe_total : NAN;
    double nan = NAN;
    const struct lejepa_losses *L = &r->losses;
    struct msg_value v[] = {
        {"loss", r->skipped ? nan : L->loss},
        {"inv", r->skipped ? nan : L->inv},
        {"sigreg", r->skipped ? nan : L->sigreg},
        {"lr", t->cfg.optim.lr * r->lr_factor},
        {"images_per_s", ips},
        {"probe_loss", probe_loss},
        {"probe_acc_train", probe_acc},
        {"loaders", (double)train_clients_loaders(t)},
        {"failures", (double)t->sampler.n_failed},
        {"samples", (double)r->n},
        {"bad_messages", (double)t->bad_messages},
    };
    char extra[64];
    snprintf(extra, sizeof extra, ",\"batch_hash\":\"%016" PRIx64 "\"", r->hash);
    train_metrics_write(t, MSG_SOURCE_TRAIN, t->step, s->epoch, v,
                        (int)(sizeof v / sizeof v[0]), extra);
    train_log(t, "step %" PRIu64 "/%" PRIu64 " epoch %" PRIu32 " loss %.5f inv %.5f "
              "sigreg %.5f lr %.3g probe_acc %.3f %.1f img/s loaders %d "
              "failures %" PRIu64, t->step, t->total, s->epoch, v[0].value,
              v[1].value, v[2].value, v[3].value, probe_acc, ips,
              train_clients_loaders(t), t->sampler.n_failed);
    t->interval_t0 = now;
    t->interval_images = 0;
    t->probe_loss_sum = 0;
    t->probe_steps = t->probe_correct = t->probe_total = 0;
}

/* Called once the compute thread is done with the step t->step. */
static void step_finish(struct train *t)
{
    struct train_slot *s = train_slot_find(t, t->step);
    CHECK(s && s->computing);
    uint32_t epoch = s->epoch;
    const struct train_step_result *r = &t->compute.result;
    if (!r->finite) {
        snprintf(t->fatal, sizeof t->fatal, "%s; stopping, the last good "
                 "checkpoint is kept", r->err);
        t->fatal_code = 3;
        write_metrics(t, s, r);
        train_slot_release(t, s);
        return;
    }
    if (r->skipped) {
        t->skipped_steps++;
        train_log(t, "step %" PRIu64 " skipped: only %d of its %d samples loaded",
                  t->step + 1, r->n, t->sampler.batch);
    } else {
        t->interval_images += (uint64_t)r->n;
        t->probe_loss_sum += r->losses.probe_loss;
        t->probe_steps++;
        t->probe_correct += r->losses.probe_correct;
        t->probe_total += r->losses.probe_total;
    }
    t->step++;
    if (t->step == 1)
        t->timing_t0 = util_time_mono();
    if (t->step % (uint64_t)t->cfg.run.log_every == 0 || t->step == t->total)
        write_metrics(t, s, r);
    train_slot_release(t, s);
    if (!t->total_fixed && t->step >= (uint64_t)t->cfg.optim.timing_steps)
        fix_total(t);
    char err[ERR_LEN];
    if (t->total_fixed && t->cfg.run.ckpt_every > 0 && t->step < t->total &&
        t->step % (uint64_t)t->cfg.run.ckpt_every == 0 &&
        train_ckpt_write(t, err) != 0)
        train_log(t, "checkpoint failed: %s", err);
    if (train_eval_due(t))
        train_eval_begin(t, epoch);
}

/* At the end of a run, evaluators are still scoring the final snapshot:
 * wait until each has sent a RESULT for the last step and none came for
 * TRAIN_RESULT_QUIET_S (one RESULT per task), at most TRAIN_RESULT_WAIT_S. */
static bool final_results_pending(struct train *t)
{
    if (t->cfg.eval.every < 0 || train_clients_evaluators(t) == 0)
        return false;
    double now = util_time_mono();
    if (t->final_wait_from == 0) {
        t->final_wait_from = now;
        train_log(t, "waiting up to %d s for the evaluators' results of step %"
                  PRIu64, TRAIN_RESULT_WAIT_S, t->step);
    }
    if (now - t->final_wait_from > TRAIN_RESULT_WAIT_S) {
        train_log(t, "evaluators' results of step %" PRIu64 " did not all "
                  "arrive within %d s", t->step, TRAIN_RESULT_WAIT_S);
        return false;
    }
    return !(train_clients_evaluators_done(t, t->step) &&
             now - t->last_result_at > TRAIN_RESULT_QUIET_S);
}

int train_loop_run(struct train *t, volatile sig_atomic_t *signals)
{
    bool stopping = false;
    for (;;) {
        if (*signals >= 2) {
            train_log(t, "second signal: exiting without a checkpoint");
            t->interrupted = true;
            return 130;
        }
        if (*signals && !stopping) {
            stopping = true;
            t->interrupted = true;
            train_log(t, "stopping: finishing the current step, then a final "
                      "checkpoint");
        }
        zmq_pollitem_t items[3] = {
            {.socket = t->router, .events = ZMQ_POLLIN},
            {.fd = t->sig_fd, .events = ZMQ_POLLIN},
            {.fd = t->compute.started ? t->compute.wake[0] : t->sig_fd,
             .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 3, TRAIN_POLL_MS) < 0 && zmq_errno() != EINTR)
            die("zmq_poll: %s", zmq_strerror(zmq_errno()));
        util_stop_drain();
        train_clients_serve(t);
        train_clients_heartbeat(t);
        /* the engine is built where the dataset becomes known: at start-up
         * (--data, --resume) or at the first loader's HELLO */
        if (!t->engine_ready) {
            if (stopping)
                return 0;
            continue;
        }
        struct train_slot *cur = train_slot_find(t, t->step);
        bool computing = cur && cur->computing;
        if (computing && train_compute_poll_done(t)) {
            step_finish(t);
            computing = false;
        }
        if (t->fatal[0])
            return t->fatal_code;
        if (computing)
            goto issue;
        /* a snapshot pauses training until it is published */
        if (train_eval_active(t) && stopping)
            train_eval_abandon(t, "the run is stopping");
        if (train_eval_active(t)) {
            train_eval_poll(t);
            goto issue;
        }
        if (stopping)
            return 0;
        if (t->step >= t->total) {
            if (final_results_pending(t))
                goto issue;
            return 0;
        }
        if (t->sampler_err[0] && t->step == t->next_open) {
            snprintf(t->fatal, sizeof t->fatal, "%s", t->sampler_err);
            return t->fatal_code = 1;
        }
        struct train_slot *s = train_slot_find(t, t->step);
        if (s && s->tickets_done == t->sampler.tickets_per_step) {
            /* a time budget runs from the first step, not from start-up */
            if (t->start_time == 0)
                t->start_time = util_time_mono();
            train_compute_submit(t, s, lr_factor(t, t->step));
        }
    issue:
        train_slots_open(t);
        train_tickets_issue(t);
    }
}
