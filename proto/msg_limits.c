/*
 * msg_limits.c: how big a message may be. The defaults are safe for the
 * handshake and small traffic; msg_limits_compute derives a run's limits from
 * plain numbers (ticket size, views, embedding and feature shapes) plus a
 * margin; msg_limits_apply hands the byte limit to libzmq (ZMQ_MAXMSGSIZE),
 * so an oversized frame is dropped by the transport before it is buffered.
 */
#include "msg.h"

#include <stdint.h>
#include <string.h>

#include "config.h"
#include "util.h"

/* Bytes of msgpack framing and small fields per message, and per sample of a
 * batch (index, label, and a failure's path, reason and class at worst;
 * the keys and small fields fit the 64). */
#define LIMITS_MSG_OVERHEAD (64u * 1024u)
#define LIMITS_SAMPLE_OVERHEAD (2u * MSG_NAME_MAX + 64u)

void msg_limits_default(struct msg_limits *l)
{
    l->max_msg_bytes = 1u << 20;
    l->max_samples = 1024;
    l->max_views = 16;
    l->max_groups = 4;
    l->max_pixels = 3u * 256u * 256u;
    l->max_emb_dim = 8192;
    l->max_feat_elems = 1u << 18;
    l->max_str = 256u * 1024u;
    l->max_array = 65536;
    l->max_values = 256;
    l->max_depth = 8;
}

void msg_limit_params_from_config(struct msg_limit_params *p,
                                  const struct config *c)
{
    memset(p, 0, sizeof *p);
    p->samples = (size_t)c->run.ticket_size;
    p->global_views = (size_t)c->views.global_count;
    p->global_size = (size_t)c->views.global_size;
    p->local_views = (size_t)c->views.local_count;
    p->local_size = (size_t)c->views.local_size;
    p->channels = (size_t)c->views.channels;
    p->margin = 1.25;
}

/* Saturating arithmetic: limits are upper bounds, so saturating is safe. */
static size_t sat_mul(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t sat_add(size_t a, size_t b)
{
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

uint32_t msg_batch_layout(const struct config_views *v, enum msg_work work,
                          bool eval_view, struct msg_group out[MSG_BATCH_GROUPS])
{
    const uint32_t c = (uint32_t)v->channels, gs = (uint32_t)v->global_size;
    const uint32_t ls = (uint32_t)v->local_size;
    const struct msg_group one = {.views = 1, .c = c, .h = gs, .w = gs};
    uint32_t n = 0;
    if (work == MSG_WORK_EVAL) {
        out[n++] = one;
    } else {
        out[n++] = (struct msg_group){.views = (uint32_t)v->global_count,
                                      .c = c, .h = gs, .w = gs};
        if (v->local_count > 0)
            out[n++] = (struct msg_group){.views = (uint32_t)v->local_count,
                                          .c = c, .h = ls, .w = ls};
    }
    if (eval_view)
        out[n++] = one;
    return n;
}

void msg_limits_compute(struct msg_limits *out, const struct msg_limit_params *p)
{
    msg_limits_default(out);
    size_t c = p->channels ? p->channels : 3;
    size_t gpix = sat_mul(c, sat_mul(p->global_size, p->global_size));
    size_t lpix = sat_mul(c, sat_mul(p->local_size, p->local_size));
    size_t grid = sat_mul(p->grid_h, p->grid_w);

    /* A train ticket may ask for the eval view too (TICKET.eval_view): one
     * more view at the global size; an eval ticket carries that view only. */
    size_t batch = sat_mul(p->samples, sat_add(sat_add(sat_mul(p->global_views + 1, gpix),
                                                       sat_mul(p->local_views, lpix)),
                                               LIMITS_SAMPLE_OVERHEAD));
    size_t embed = sat_mul(p->embed_chunk, sat_add(4, sat_mul(4, p->emb_dim)));
    size_t feat = sat_mul(p->featmap_images, sat_mul(p->feat_dim, grid));
    size_t attn = sat_mul(p->featmap_images, sat_mul(p->heads, grid));
    size_t featmap = sat_add(sat_mul(p->featmap_images, sat_add(gpix, 4)),
                             sat_mul(4, sat_add(feat, attn)));

    size_t biggest = max_size(batch, max_size(embed, featmap));
    double margin = p->margin >= 1.0 ? p->margin : 1.0;
    double scaled = (double)biggest * margin + LIMITS_MSG_OVERHEAD;
    size_t bytes = scaled >= (double)SIZE_MAX ? SIZE_MAX : (size_t)scaled;

    out->max_msg_bytes = max_size(out->max_msg_bytes, bytes);
    out->max_samples = max_size(out->max_samples, p->samples);
    out->max_views = max_size(out->max_views, max_size(p->global_views, p->local_views));
    out->max_pixels = max_size(out->max_pixels, max_size(gpix, lpix));
    out->max_emb_dim = max_size(out->max_emb_dim, p->emb_dim);
    out->max_feat_elems = max_size(out->max_feat_elems, max_size(feat, attn));
}

/* HISTORY lines, classes or returned tickets (max_array each, only one kind
 * per message, so 2x is generous), a batch's indices, labels and failures
 * (7 elements per failed sample; 16 leaves room for new optional fields),
 * the values map, and the fields of
 * every map (MSG_MAX_FIELDS per map, a few maps). */
size_t msg_limits_elems(const struct msg_limits *l)
{
    size_t n = sat_mul(2, l->max_array);
    n = sat_add(n, sat_mul(16, l->max_samples));
    n = sat_add(n, sat_mul(2, l->max_values));
    n = sat_add(n, sat_mul(2 * MSG_MAX_FIELDS, sat_add(l->max_groups, 4)));
    return n;
}

int msg_limits_apply(void *sock, const struct msg_limits *l, char *err)
{
    int64_t max = l->max_msg_bytes > (size_t)INT64_MAX ? -1 : (int64_t)l->max_msg_bytes;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0)
        return errf(err, "zmq_setsockopt(ZMQ_MAXMSGSIZE=%lld): %s", (long long)max,
                    zmq_strerror(zmq_errno()));
    return 0;
}
