/*
 * zap.c: the ZAP handler thread, the CURVE server options and the User-Id
 * convention (zap.h). The thread answers every request at once from its own
 * copy of the allow-list and never logs; the main thread reads the counts
 * and drains the refusal ring.
 */
#include "zap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define ZAP_FRAMES_MAX 16               /* RFC 27: 6 + credentials (CURVE 1, PLAIN 2) */

static const char *const reason_texts[ZAP_REFUSED_COUNT] = {
    [ZAP_REFUSED_UNKNOWN_KEY] = "unknown key",
    [ZAP_REFUSED_MECHANISM] = "no CURVE keys",
    [ZAP_REFUSED_DOMAIN] = "wrong ZAP domain",
    [ZAP_REFUSED_MALFORMED] = "malformed ZAP request",
};

const char *zap_reason_text(enum zap_reason r)
{
    return (unsigned)r < ZAP_REFUSED_COUNT ? reason_texts[r] : "?";
}

uint64_t zap_accepted(const struct zap_handler *z)
{
    return atomic_load(&z->accepted);
}

uint64_t zap_refused(const struct zap_handler *z, enum zap_reason r)
{
    CHECK((unsigned)r < ZAP_REFUSED_COUNT);
    return atomic_load(&z->refused[r]);
}

void zap_user_id_format(char *out, size_t cap, enum msg_role role, const char *name)
{
    snprintf(out, cap, "%s:%s", msg_role_name(role), name);
}

int zap_user_id_parse(const char *user_id, enum msg_role *role, char *name, size_t cap,
                      char *err)
{
    const char *colon = strchr(user_id, ':');
    if (!colon)
        return errf(err, "User-Id '%.80s' is not ROLE:NAME", user_id);
    size_t rn = (size_t)(colon - user_id);
    for (int r = MSG_ROLE_LOADER; r <= MSG_ROLE_MONITOR; r++) {
        const char *s = msg_role_name((enum msg_role)r);
        if (strlen(s) == rn && strncmp(user_id, s, rn) == 0) {
            if (keys_name_check(colon + 1, err) < 0 || strlen(colon + 1) >= cap)
                return errf(err, "User-Id '%.80s': bad name", user_id);
            *role = (enum msg_role)r;
            snprintf(name, cap, "%s", colon + 1);
            return 0;
        }
    }
    return errf(err, "User-Id '%.80s': unknown role", user_id);
}

int zap_peer_of(zmq_msg_t *frame, enum msg_role *role, char *name, size_t cap, char *err)
{
    const char *uid = zmq_msg_gets(frame, "User-Id");
    if (!uid || !uid[0])
        return 0;
    return zap_user_id_parse(uid, role, name, cap, err) < 0 ? -1 : 1;
}

bool zap_role_may_send(enum msg_role role, enum msg_kind kind)
{
    switch (kind) {
    case MSG_KIND_HELLO:
    case MSG_KIND_HEARTBEAT:
    case MSG_KIND_HISTORY:
    case MSG_KIND_BYE:
        return true;
    case MSG_KIND_BATCH:
    case MSG_KIND_RETURN:
        return role == MSG_ROLE_LOADER;
    case MSG_KIND_RESULT:
        return role == MSG_ROLE_EVALUATOR;
    default:
        return false;   /* the trainer's own kinds */
    }
}

/* ---- the handler thread ------------------------------------------------- */

static void frame_text(char *out, size_t cap, zmq_msg_t *f)
{
    size_t n = zmq_msg_size(f);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, zmq_msg_data(f), n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 32 || (unsigned char)out[i] > 126)
            out[i] = '?';
}

static bool frame_is(zmq_msg_t *f, const char *s)
{
    return zmq_msg_size(f) == strlen(s) && memcmp(zmq_msg_data(f), s, strlen(s)) == 0;
}

static void refuse(struct zap_handler *z, enum zap_reason r, zmq_msg_t *f, int nf)
{
    struct zap_refusal rec = {.reason = r};
    if (nf > 3)
        frame_text(rec.address, sizeof rec.address, &f[3]);
    if (nf > 5)
        frame_text(rec.mechanism, sizeof rec.mechanism, &f[5]);
    if (nf > 6 && zmq_msg_size(&f[6]) == KEYS_BIN_LEN) {
        char z85[KEYS_Z85_LEN + 1];
        if (zmq_z85_encode(z85, zmq_msg_data(&f[6]), KEYS_BIN_LEN))
            snprintf(rec.key, sizeof rec.key, "%.8s...", z85);
    }
    atomic_fetch_add(&z->refused[r], 1);
    pthread_mutex_lock(&z->lock);
    if (z->ring_n == ZAP_RING) {
        z->ring_start = (z->ring_start + 1) % ZAP_RING;
        z->ring_n--;
        z->ring_lost++;
    }
    z->ring[(z->ring_start + z->ring_n) % ZAP_RING] = rec;
    z->ring_n++;
    pthread_mutex_unlock(&z->lock);
}

/* Decides one request (frames f[0..nf)); writes status and User-Id. */
static const char *decide(struct zap_handler *z, zmq_msg_t *f, int nf, char *user_id,
                          const char **text)
{
    if (nf < 6 || !frame_is(&f[0], "1.0")) {
        refuse(z, ZAP_REFUSED_MALFORMED, f, nf);
        *text = reason_texts[ZAP_REFUSED_MALFORMED];
        return "500";
    }
    if (!frame_is(&f[2], ZAP_DOMAIN)) {
        refuse(z, ZAP_REFUSED_DOMAIN, f, nf);
        *text = reason_texts[ZAP_REFUSED_DOMAIN];
        return "400";
    }
    if (!frame_is(&f[5], "CURVE")) {
        refuse(z, ZAP_REFUSED_MECHANISM, f, nf);
        *text = reason_texts[ZAP_REFUSED_MECHANISM];
        return "400";
    }
    if (nf != 7 || zmq_msg_size(&f[6]) != KEYS_BIN_LEN) {
        refuse(z, ZAP_REFUSED_MALFORMED, f, nf);
        *text = reason_texts[ZAP_REFUSED_MALFORMED];
        return "500";
    }
    const struct keys_allow_entry *e = keys_allow_find(&z->allow, zmq_msg_data(&f[6]));
    if (!e) {
        refuse(z, ZAP_REFUSED_UNKNOWN_KEY, f, nf);
        *text = reason_texts[ZAP_REFUSED_UNKNOWN_KEY];
        return "400";
    }
    atomic_fetch_add(&z->accepted, 1);
    zap_user_id_format(user_id, ZAP_USER_ID_MAX, e->role, e->name);
    *text = "OK";
    return "200";
}

/* One request in, one reply out. The REP socket must always answer, or
 * libzmq's handshakes stall; a send can fail only when the context ends. */
static void serve_one(struct zap_handler *z)
{
    zmq_msg_t f[ZAP_FRAMES_MAX];
    int nf = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, z->rep, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (nf < ZAP_FRAMES_MAX)
            f[nf++] = part;
        else
            zmq_msg_close(&part);
    }
    if (nf == 0)
        return;
    char user_id[ZAP_USER_ID_MAX] = "";
    const char *text = "";
    const char *status = decide(z, f, nf, user_id, &text);
    const struct { const void *p; size_t n; } reply[6] = {
        {"1.0", 3},
        {nf > 1 ? zmq_msg_data(&f[1]) : "", nf > 1 ? zmq_msg_size(&f[1]) : 0},
        {status, strlen(status)},
        {text, strlen(text)},
        {user_id, strlen(user_id)},
        {"", 0},                        /* metadata: none */
    };
    for (int i = 0; i < 6; i++)
        if (zmq_send(z->rep, reply[i].p, reply[i].n, i < 5 ? ZMQ_SNDMORE : 0) < 0)
            break;                      /* only when the context ends */
    for (int i = 0; i < nf; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_thread(void *arg)
{
    struct zap_handler *z = arg;
    for (;;) {
        zmq_pollitem_t items[2] = {
            {.socket = z->rep, .events = ZMQ_POLLIN},
            {.socket = z->ctl_peer, .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            serve_one(z);
    }
    zmq_close(z->rep);
    zmq_close(z->ctl_peer);
    return NULL;
}

int zap_start(struct zap_handler *z, void *ctx, const struct keys_allow *allow, char *err)
{
    memset(z, 0, sizeof *z);
    atomic_init(&z->accepted, 0);
    for (int i = 0; i < ZAP_REFUSED_COUNT; i++)
        atomic_init(&z->refused[i], 0);
    char ctl_ep[64];
    snprintf(ctl_ep, sizeof ctl_ep, "inproc://lejepa-zap-ctl-%p", (void *)z);
    /* Sockets are made and bound here, so a bind failure (a handler already
     * in this context) is reported now; the thread takes them over. */
    z->rep = zmq_socket(ctx, ZMQ_REP);
    z->ctl = zmq_socket(ctx, ZMQ_PAIR);
    z->ctl_peer = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    if (!z->rep || !z->ctl || !z->ctl_peer) {
        errf(err, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(z->ctl, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(z->ctl_peer, ZMQ_LINGER, &linger, sizeof linger) != 0) {
        errf(err, "zmq_setsockopt(ZMQ_LINGER): %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        errf(err, "cannot bind the ZAP handler to %s: %s", ZAP_ENDPOINT,
             zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_bind(z->ctl_peer, ctl_ep) != 0 || zmq_connect(z->ctl, ctl_ep) != 0) {
        errf(err, "%s: %s", ctl_ep, zmq_strerror(zmq_errno()));
        goto fail;
    }
    z->allow.n = allow ? allow->n : 0;
    z->allow.e = xcalloc(z->allow.n, sizeof *z->allow.e);
    if (z->allow.n)
        memcpy(z->allow.e, allow->e, z->allow.n * sizeof *z->allow.e);
    snprintf(z->allow.path, sizeof z->allow.path, "%s", allow ? allow->path : "");
    pthread_mutex_init(&z->lock, NULL);
    int rc = pthread_create(&z->thread, NULL, zap_thread, z);
    if (rc != 0) {
        errf(err, "cannot start the ZAP thread: %s", strerror(rc));
        pthread_mutex_destroy(&z->lock);
        keys_allow_free(&z->allow);
        goto fail;
    }
    z->running = true;
    return 0;
fail:
    if (z->rep)
        zmq_close(z->rep);
    if (z->ctl)
        zmq_close(z->ctl);
    if (z->ctl_peer)
        zmq_close(z->ctl_peer);
    z->rep = z->ctl = z->ctl_peer = NULL;
    return -1;
}

void zap_stop(struct zap_handler *z)
{
    if (!z->running)
        return;
    /* PAIR over inproc: the peer is connected, so this send cannot block */
    if (zmq_send(z->ctl, "", 0, 0) < 0)
        fprintf(stderr, "%s: zap_stop: %s\n", util_program(), zmq_strerror(zmq_errno()));
    pthread_join(z->thread, NULL);
    zmq_close(z->ctl);
    z->ctl = z->rep = z->ctl_peer = NULL;
    pthread_mutex_destroy(&z->lock);
    keys_allow_free(&z->allow);
    z->running = false;
}

size_t zap_drain_refusals(struct zap_handler *z, struct zap_refusal *out, size_t cap,
                          uint64_t *lost)
{
    if (!z->running) {
        if (lost)
            *lost = 0;
        return 0;
    }
    pthread_mutex_lock(&z->lock);
    size_t n = z->ring_n < cap ? z->ring_n : cap;
    for (size_t i = 0; i < n; i++)
        out[i] = z->ring[(z->ring_start + i) % ZAP_RING];
    z->ring_start = (unsigned)((z->ring_start + n) % ZAP_RING);
    z->ring_n -= (unsigned)n;
    if (lost)
        *lost = z->ring_lost;
    z->ring_lost = 0;
    pthread_mutex_unlock(&z->lock);
    return n;
}

int zap_server_apply(void *sock, const struct zap_handler *z, const struct keys_pair *server,
                     char *err)
{
    if (!z || !z->running)
        return errf(err, "refusing to key a socket without the ZAP handler running: "
                    "CURVE alone would admit any client");
    if (!server->secret_z85[0])
        return errf(err, "the server's key pair has no secret key (give its .key file)");
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, server->secret_z85, KEYS_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) != 0)
        return errf(err, "cannot make the socket a CURVE server: %s",
                    zmq_strerror(zmq_errno()));
    return 0;
}
