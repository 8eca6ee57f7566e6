/*
 * test_keys.c: CurveZMQ keys end to end. Key files round-trip and every
 * broken one is refused naming the file; allow-list errors name file:line;
 * then real sockets over tcp://127.0.0.1 with the ZAP handler: an allowed
 * client is let in and its role and name arrive in User-Id, an unknown key,
 * a keyless client and a client expecting another server key get nothing
 * through and their watch says why; PUB/SUB carries CURVE too. Waits are
 * bounded polls, never timing assertions.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "keys.h"
#include "testing.h"
#include "util.h"
#include "zap.h"

#define WAIT_S 5.0                      /* bound of every wait for an event */
#define QUIET_MS 300                    /* how long "nothing arrives" is watched */
#define LOADER_VERDICT_S 30.0           /* a keyless loader's verdict, with backoff */

static void put(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(path, text, strlen(text), err), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(path, mode), 0);
}

/* Reads DIR/NAME as a pair (secret) or a public key; the error in err. */
static int read_pair(const char *dir, const char *name, char *err)
{
    char path[4096];
    struct keys_pair kp;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return keys_read_pair(path, &kp, err);
}

static int read_pub(const char *dir, const char *name, char *err)
{
    char path[4096], z85[KEYS_Z85_LEN + 1];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return keys_read_public(path, z85, err);
}

#define HAS(s, sub) CU_ASSERT_PTR_NOT_NULL(strstr((s), (sub)))

static void test_pair_round_trip(void)
{
    char *dir = testing_tmpdir();
    char sub[4096], kpath[4096], ppath[4096], err[ERR_LEN];
    snprintf(sub, sizeof sub, "%s/keys", dir);
    struct keys_pair kp, back;
    CU_ASSERT_EQUAL_FATAL(keys_generate(&kp, err), 0);
    CU_ASSERT_TRUE(keys_z85_valid(kp.public_z85, err));
    CU_ASSERT_EQUAL_FATAL(keys_write_pair(sub, "loader-1", &kp, false, kpath, ppath, err), 0);
    struct stat st;
    CU_ASSERT_EQUAL(stat(kpath, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(stat(ppath, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0644);
    CU_ASSERT_EQUAL_FATAL(keys_read_pair(kpath, &back, err), 0);
    CU_ASSERT_STRING_EQUAL(back.public_z85, kp.public_z85);
    CU_ASSERT_STRING_EQUAL(back.secret_z85, kp.secret_z85);
    char pub[KEYS_Z85_LEN + 1];
    CU_ASSERT_EQUAL_FATAL(keys_read_public(ppath, pub, err), 0);
    CU_ASSERT_STRING_EQUAL(pub, kp.public_z85);
    /* the secret never appears in the .pub */
    char *text = util_read_file(ppath, NULL, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NULL(strstr(text, kp.secret_z85));
    HAS(text, KEYS_MAGIC);
    free(text);
    /* no silent replacement of a key */
    CU_ASSERT_EQUAL(keys_write_pair(sub, "loader-1", &kp, false, NULL, NULL, err), -1);
    HAS(err, "already exists");
    CU_ASSERT_EQUAL(keys_write_pair(sub, "loader-1", &kp, true, NULL, NULL, err), 0);
    CU_ASSERT_EQUAL(keys_write_pair(sub, "../evil", &kp, false, NULL, NULL, err), -1);
    testing_rmtree(dir);
    free(dir);
}

static void test_key_file_errors(void)
{
    char *dir = testing_tmpdir();
    char err[ERR_LEN], text[512];
    struct keys_pair kp, other;
    CU_ASSERT_EQUAL_FATAL(keys_generate(&kp, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&other, err), 0);

    CU_ASSERT_EQUAL(read_pair(dir, "missing.key", err), -1);
    HAS(err, "missing.key");
    HAS(err, "No such file");

    snprintf(text, sizeof text, KEYS_MAGIC "\npublic = %s\nsecret = %s\n", kp.public_z85,
             kp.secret_z85);
    put(dir, "good.key", text, 0600);
    CU_ASSERT_EQUAL(read_pair(dir, "good.key", err), 0);
    put(dir, "open.key", text, 0644);
    CU_ASSERT_EQUAL(read_pair(dir, "open.key", err), -1);
    HAS(err, "open.key");
    HAS(err, "chmod 600");
    put(dir, "group.key", text, 0640);
    CU_ASSERT_EQUAL(read_pair(dir, "group.key", err), -1);
    HAS(err, "chmod 600");
    CU_ASSERT_EQUAL(read_pub(dir, "good.key", err), -1);    /* a secret to --server-key */
    HAS(err, "holds a secret key");

    put(dir, "nomagic.key", "public = x\n", 0600);
    CU_ASSERT_EQUAL(read_pair(dir, "nomagic.key", err), -1);
    HAS(err, "nomagic.key");
    HAS(err, "first line");
    put(dir, "v9.key", "# lejepa curve key v9\n", 0600);
    CU_ASSERT_EQUAL(read_pair(dir, "v9.key", err), -1);
    HAS(err, "version");

    char bad[KEYS_Z85_LEN + 1];
    snprintf(bad, sizeof bad, "%s", kp.public_z85);
    bad[5] = '"';                       /* not in the Z85 alphabet */
    snprintf(text, sizeof text, KEYS_MAGIC "\npublic = %s\n", bad);
    put(dir, "badchar.pub", text, 0644);
    CU_ASSERT_EQUAL(read_pub(dir, "badchar.pub", err), -1);
    HAS(err, "badchar.pub:2");
    HAS(err, "not Z85");
    snprintf(text, sizeof text, KEYS_MAGIC "\npublic = %.39s\n", kp.public_z85);
    put(dir, "short.pub", text, 0644);
    CU_ASSERT_EQUAL(read_pub(dir, "short.pub", err), -1);
    HAS(err, "40 characters");
    HAS(err, "got 39");

    snprintf(text, sizeof text, KEYS_MAGIC "\npublic = %s\n", kp.public_z85);
    put(dir, "only.pub", text, 0644);
    CU_ASSERT_EQUAL(read_pub(dir, "only.pub", err), 0);
    put(dir, "only.key", text, 0600);
    CU_ASSERT_EQUAL(read_pair(dir, "only.key", err), -1);
    HAS(err, "no 'secret = KEY'");
    snprintf(text, sizeof text, KEYS_MAGIC "\npublic = %s\nsecret = %s\n", other.public_z85,
             kp.secret_z85);
    put(dir, "mixed.key", text, 0600);
    CU_ASSERT_EQUAL(read_pair(dir, "mixed.key", err), -1);
    HAS(err, "does not belong");
    snprintf(text, sizeof text, KEYS_MAGIC "\npublic = %s\npublic = %s\n", kp.public_z85,
             kp.public_z85);
    put(dir, "twice.pub", text, 0644);
    CU_ASSERT_EQUAL(read_pub(dir, "twice.pub", err), -1);
    HAS(err, "twice.pub:3");
    snprintf(text, sizeof text, KEYS_MAGIC "\nprivate = %s\n", kp.public_z85);
    put(dir, "field.pub", text, 0644);
    CU_ASSERT_EQUAL(read_pub(dir, "field.pub", err), -1);
    HAS(err, "unknown key 'private'");
    put(dir, "empty.pub", KEYS_MAGIC "\n# nothing\n", 0644);
    CU_ASSERT_EQUAL(read_pub(dir, "empty.pub", err), -1);
    HAS(err, "no 'public = KEY'");
    testing_rmtree(dir);
    free(dir);
}

/* Parses text as DIR/allow; returns the result, the error in err. */
static int allow_text(struct keys_allow *a, const char *dir, const char *text, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/allow", dir);
    put(dir, "allow", text, 0644);
    return keys_allow_load(a, path, err);
}

static void test_allow_list(void)
{
    char *dir = testing_tmpdir();
    char err[ERR_LEN], path[4096];
    struct keys_pair k1, k2, k3;
    CU_ASSERT_EQUAL_FATAL(keys_generate(&k1, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&k2, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&k3, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_write_pair(dir, "mon", &k3, false, NULL, NULL, err), 0);
    size_t cap = 8192;
    char *text = xmalloc(cap);
    snprintf(text, cap,
             KEYS_ALLOW_MAGIC "\n"
             "# the run's clients\n\n"
             "loader    loader-1   %s\n"
             "  evaluator eval@gpu2 %s\r\n"
             "monitor mon mon.pub\n",
             k1.public_z85, k2.public_z85);
    struct keys_allow a;
    CU_ASSERT_EQUAL_FATAL(allow_text(&a, dir, text, err), 0);
    CU_ASSERT_EQUAL_FATAL(a.n, 3);
    CU_ASSERT_EQUAL(a.e[0].role, MSG_ROLE_LOADER);
    CU_ASSERT_STRING_EQUAL(a.e[0].name, "loader-1");
    CU_ASSERT_EQUAL(a.e[0].line, 4);
    CU_ASSERT_EQUAL(a.e[1].role, MSG_ROLE_EVALUATOR);
    CU_ASSERT_STRING_EQUAL(a.e[1].name, "eval@gpu2");
    CU_ASSERT_EQUAL(a.e[2].role, MSG_ROLE_MONITOR);
    CU_ASSERT_STRING_EQUAL(a.e[2].public_z85, k3.public_z85);
    uint8_t bin[KEYS_BIN_LEN];
    CU_ASSERT_PTR_NOT_NULL_FATAL(zmq_z85_decode(bin, k2.public_z85));
    CU_ASSERT_PTR_EQUAL(keys_allow_find(&a, bin), &a.e[1]);
    bin[0] ^= 1;
    CU_ASSERT_PTR_NULL(keys_allow_find(&a, bin));
    keys_allow_free(&a);

    static const struct { const char *body, *where, *what; } bad[] = {
        {"loader l1 ~1\nloader l2 ~1\n", "allow:3", "already listed at line 2"},
        {"loader l1 ~1\nmonitor l1 ~2\n", "allow:3", "name 'l1' is already listed"},
        {"# fine\nwizard w1 ~1\n", "allow:3", "unknown role 'wizard'"},
        {"loader bad/name ~1\n", "allow:2", "only letters"},
        {"loader l1 short\n", "allow:2", "40 characters"},
        {"loader l1\n", "allow:2", "got 2 fields"},
        {"loader l1 ~1 extra\n", "allow:2", "got 4 fields"},
        {"loader l1 nowhere.pub\n", "allow:2", "nowhere.pub"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* ~1/~2 stand for the two keys (no Z85 text holds a ~, so a key
         * put in cannot be taken for one) */
        char body[512];
        snprintf(body, sizeof body, "%s", bad[i].body);
        for (char *p; (p = strstr(body, "~1")) || (p = strstr(body, "~2"));) {
            const char *k = p[1] == '1' ? k1.public_z85 : k2.public_z85;
            char rest[512];
            snprintf(rest, sizeof rest, "%s", p + 2);
            snprintf(p, sizeof body - (size_t)(p - body), "%s%s", k, rest);
        }
        snprintf(text, cap, KEYS_ALLOW_MAGIC "\n%s", body);
        err[0] = '\0';
        CU_ASSERT_EQUAL(allow_text(&a, dir, text, err), -1);
        HAS(err, bad[i].where);
        HAS(err, bad[i].what);
        CU_ASSERT_EQUAL(a.n, 0);
    }
    CU_ASSERT_EQUAL(allow_text(&a, dir, "loader l1 x\n", err), -1);
    HAS(err, "allow:1");
    HAS(err, KEYS_ALLOW_MAGIC);
    CU_ASSERT_EQUAL(allow_text(&a, dir, "", err), -1);
    HAS(err, "allow:1");
    snprintf(path, sizeof path, "%s/none", dir);
    CU_ASSERT_EQUAL(keys_allow_load(&a, path, err), -1);
    HAS(err, "none");

    /* bounded: entry KEYS_ALLOW_MAX + 1 is refused at its line */
    size_t big = 64 + (KEYS_ALLOW_MAX + 1) * 80;
    char *many = xmalloc(big);
    size_t n = (size_t)snprintf(many, big, KEYS_ALLOW_MAGIC "\n");
    for (int i = 0; i <= KEYS_ALLOW_MAX; i++) {
        struct keys_pair k;
        CU_ASSERT_EQUAL_FATAL(keys_generate(&k, err), 0);
        n += (size_t)snprintf(many + n, big - n, "loader l%d %s\n", i, k.public_z85);
    }
    CU_ASSERT_EQUAL(keys_allow_parse(&a, many, n, "big", err), -1);
    HAS(err, "big:4098");
    HAS(err, "more than 4096");
    free(many);
    free(text);
    testing_rmtree(dir);
    free(dir);
}

static void test_user_id(void)
{
    char uid[ZAP_USER_ID_MAX], name[KEYS_NAME_MAX], err[ERR_LEN];
    enum msg_role role;
    zap_user_id_format(uid, sizeof uid, MSG_ROLE_EVALUATOR, "eval@gpu2");
    CU_ASSERT_STRING_EQUAL(uid, "evaluator:eval@gpu2");
    CU_ASSERT_EQUAL(zap_user_id_parse(uid, &role, name, sizeof name, err), 0);
    CU_ASSERT_EQUAL(role, MSG_ROLE_EVALUATOR);
    CU_ASSERT_STRING_EQUAL(name, "eval@gpu2");
    CU_ASSERT_EQUAL(zap_user_id_parse("loader", &role, name, sizeof name, err), -1);
    CU_ASSERT_EQUAL(zap_user_id_parse("wizard:x", &role, name, sizeof name, err), -1);
    CU_ASSERT_EQUAL(zap_user_id_parse("loader:", &role, name, sizeof name, err), -1);
    CU_ASSERT_TRUE(zap_role_may_send(MSG_ROLE_LOADER, MSG_KIND_BATCH));
    CU_ASSERT_FALSE(zap_role_may_send(MSG_ROLE_MONITOR, MSG_KIND_BATCH));
    CU_ASSERT_FALSE(zap_role_may_send(MSG_ROLE_LOADER, MSG_KIND_RESULT));
    CU_ASSERT_TRUE(zap_role_may_send(MSG_ROLE_EVALUATOR, MSG_KIND_RESULT));
    CU_ASSERT_FALSE(zap_role_may_send(MSG_ROLE_EVALUATOR, MSG_KIND_WELCOME));
    CU_ASSERT_TRUE(zap_role_may_send(MSG_ROLE_MONITOR, MSG_KIND_HISTORY));
}

/* ---- real sockets -------------------------------------------------------- */

/* A trainer-like server: the handler in its own context, one keyed socket. */
struct server {
    void *ctx, *sock;
    struct zap_handler zap;
    struct keys_pair key, loader, evaluator, stranger;
    char endpoint[256];
};

static void server_up(struct server *s, int type, bool keyed)
{
    char err[ERR_LEN], text[512];
    memset(s, 0, sizeof *s);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&s->key, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&s->loader, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&s->evaluator, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_generate(&s->stranger, err), 0);
    s->ctx = zmq_ctx_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s->ctx);
    s->sock = zmq_socket(s->ctx, type);
    int linger = 0;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (keyed) {
        snprintf(text, sizeof text, KEYS_ALLOW_MAGIC "\nloader loader-1 %s\nevaluator ev %s\n",
                 s->loader.public_z85, s->evaluator.public_z85);
        struct keys_allow a;
        CU_ASSERT_EQUAL_FATAL(keys_allow_parse(&a, text, strlen(text), "test", err), 0);
        CU_ASSERT_EQUAL_FATAL(zap_start(&s->zap, s->ctx, &a, err), 0);
        keys_allow_free(&a);    /* the handler keeps its own copy */
        CU_ASSERT_EQUAL_FATAL(zap_server_apply(s->sock, &s->zap, &s->key, err), 0);
    }
    CU_ASSERT_EQUAL_FATAL(zmq_bind(s->sock, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof s->endpoint;
    CU_ASSERT_EQUAL_FATAL(zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &n), 0);
}

static void server_down(struct server *s)
{
    zmq_close(s->sock);
    zap_stop(&s->zap);
    CU_ASSERT_EQUAL(zmq_ctx_term(s->ctx), 0);
}

/* A client socket in its own context, keyed when key is non-NULL. */
struct peer {
    void *ctx, *sock;
    struct client_watch watch;
};

static void peer_up(struct peer *p, int type, const char *endpoint, const struct keys_pair *key,
                    const char *server_key)
{
    static const char *const topics[] = {"METRIC", NULL};
    char err[ERR_LEN];
    struct msg_limits lim;
    msg_limits_default(&lim);
    p->ctx = zmq_ctx_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->ctx);
    const struct client_socket_opts o = {
        .send_timeout_ms = 100, .lim = &lim, .key = key,
        .server_key = key ? server_key : NULL, .watch = &p->watch,
        .topics = type == ZMQ_SUB ? topics : NULL,
    };
    p->sock = client_socket_open(p->ctx, type, endpoint, &o, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->sock);
}

static void peer_down(struct peer *p)
{
    zmq_close(p->sock);
    client_watch_close(&p->watch);
    CU_ASSERT_EQUAL(zmq_ctx_term(p->ctx), 0);
}

/* The watch's first failure within WAIT_S, or CLIENT_AUTH_OK. */
static enum client_auth wait_verdict(struct peer *p, char *text)
{
    double end = util_time_mono() + WAIT_S;
    while (util_time_mono() < end) {
        enum client_auth a = client_watch_check(&p->watch, "?", text);
        if (a != CLIENT_AUTH_OK)
            return a;
        zmq_pollitem_t it = {.socket = p->watch.pair, .events = ZMQ_POLLIN};
        zmq_poll(&it, 1, 50);
    }
    return CLIENT_AUTH_OK;
}

/* The body of the next message on a ROUTER (identity frame dropped) within
 * timeout_ms: 1 with body to close, 0 when none came. */
static int router_recv(void *sock, zmq_msg_t *body, long timeout_ms)
{
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return 0;
    zmq_msg_t id;
    zmq_msg_init(&id);
    CU_ASSERT_FATAL(zmq_msg_recv(&id, sock, 0) >= 0);
    CU_ASSERT_FATAL(zmq_msg_more(&id));
    zmq_msg_close(&id);
    zmq_msg_init(body);
    CU_ASSERT_FATAL(zmq_msg_recv(body, sock, 0) >= 0);
    return 1;
}

static void test_allowed_client(void)
{
    struct server s;
    struct peer p;
    server_up(&s, ZMQ_ROUTER, true);
    peer_up(&p, ZMQ_DEALER, s.endpoint, &s.loader, s.key.public_z85);
    CU_ASSERT_EQUAL(zmq_send(p.sock, "hello", 5, 0), 5);
    zmq_msg_t body;
    CU_ASSERT_EQUAL_FATAL(router_recv(s.sock, &body, (long)(WAIT_S * 1000)), 1);
    CU_ASSERT_EQUAL(zmq_msg_size(&body), 5);
    const char *uid = zmq_msg_gets(&body, "User-Id");
    CU_ASSERT_PTR_NOT_NULL_FATAL(uid);
    CU_ASSERT_STRING_EQUAL(uid, "loader:loader-1");
    enum msg_role role = MSG_ROLE_MONITOR;
    char name[KEYS_NAME_MAX], err[ERR_LEN], text[ERR_LEN];
    CU_ASSERT_EQUAL(zap_peer_of(&body, &role, name, sizeof name, err), 1);
    CU_ASSERT_EQUAL(role, MSG_ROLE_LOADER);
    CU_ASSERT_STRING_EQUAL(name, "loader-1");
    zmq_msg_close(&body);
    CU_ASSERT_EQUAL(client_watch_check(&p.watch, "?", text), CLIENT_AUTH_OK);
    CU_ASSERT_EQUAL(zap_accepted(&s.zap), 1);
    for (int r = 0; r < ZAP_REFUSED_COUNT; r++)
        CU_ASSERT_EQUAL(zap_refused(&s.zap, (enum zap_reason)r), 0);
    peer_down(&p);
    server_down(&s);
}

static void test_unknown_key(void)
{
    struct server s;
    struct peer p;
    char text[ERR_LEN];
    server_up(&s, ZMQ_ROUTER, true);
    peer_up(&p, ZMQ_DEALER, s.endpoint, &s.stranger, s.key.public_z85);
    zmq_send(p.sock, "hello", 5, ZMQ_DONTWAIT);
    CU_ASSERT_EQUAL(wait_verdict(&p, text), CLIENT_AUTH_REFUSED);
    HAS(text, "refused this client's key");
    HAS(text, "allow-list");
    zmq_msg_t body;
    CU_ASSERT_EQUAL(router_recv(s.sock, &body, QUIET_MS), 0);
    CU_ASSERT(zap_refused(&s.zap, ZAP_REFUSED_UNKNOWN_KEY) >= 1);
    CU_ASSERT_EQUAL(zap_accepted(&s.zap), 0);
    struct zap_refusal r[ZAP_RING];
    uint64_t lost = 99;
    size_t n = zap_drain_refusals(&s.zap, r, ZAP_RING, &lost);
    CU_ASSERT_FATAL(n >= 1);
    CU_ASSERT_EQUAL(lost, 0);
    CU_ASSERT_EQUAL(r[0].reason, ZAP_REFUSED_UNKNOWN_KEY);
    CU_ASSERT_EQUAL(strncmp(r[0].key, s.stranger.public_z85, 8), 0);
    CU_ASSERT_STRING_EQUAL(r[0].address, "127.0.0.1");
    CU_ASSERT_STRING_EQUAL(r[0].mechanism, "CURVE");
    peer_down(&p);
    server_down(&s);
}

static void test_keyless_client(void)
{
    struct server s;
    struct peer p;
    char text[ERR_LEN];
    server_up(&s, ZMQ_ROUTER, true);
    peer_up(&p, ZMQ_DEALER, s.endpoint, NULL, NULL);
    zmq_send(p.sock, "hello", 5, ZMQ_DONTWAIT);
    CU_ASSERT_EQUAL(wait_verdict(&p, text), CLIENT_AUTH_MISMATCH);
    HAS(text, "requires CurveZMQ keys");
    zmq_msg_t body;
    CU_ASSERT_EQUAL(router_recv(s.sock, &body, QUIET_MS), 0);
    CU_ASSERT_EQUAL(zap_accepted(&s.zap), 0);
    peer_down(&p);
    server_down(&s);
}

/* Monitor events as libzmq writes them: [u16 event, u32 value], [endpoint]. */
static void fake_event(void *sock, uint16_t ev, uint32_t value)
{
    uint8_t head[6];
    memcpy(head, &ev, 2);
    memcpy(head + 2, &value, 4);
    CU_ASSERT_EQUAL(zmq_send(sock, head, sizeof head, ZMQ_SNDMORE), 6);
    CU_ASSERT_EQUAL(zmq_send(sock, "tcp://t:5555", 12, 0), 12);
}

/* A CURVE trainer closes a keyless greeting, most often before the client
 * reads the mismatch: closes in a row are the verdict for keyless clients
 * too, and a success in between starts the count again. */
static void test_keyless_closed(void)
{
    void *ctx = zmq_ctx_new(), *in = zmq_socket(ctx, ZMQ_PAIR), *out = zmq_socket(ctx, ZMQ_PAIR);
    CU_ASSERT_FATAL(zmq_bind(in, "inproc://fake-watch") == 0 &&
                    zmq_connect(out, "inproc://fake-watch") == 0);
    struct client_watch w = {.pair = in, .keyed = false};
    char text[ERR_LEN] = "";
    for (int i = 0; i < CLIENT_AUTH_CLOSED_REPEAT - 1; i++)
        fake_event(out, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32);
    fake_event(out, ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0);
    fake_event(out, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32);
    CU_ASSERT_EQUAL(client_watch_check(&w, "tcp://t:5555", text), CLIENT_AUTH_OK);
    for (int i = 0; i < CLIENT_AUTH_CLOSED_REPEAT - 1; i++)
        fake_event(out, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32);
    CU_ASSERT_EQUAL(client_watch_check(&w, "tcp://t:5555", text), CLIENT_AUTH_MISMATCH);
    HAS(text, "requires CurveZMQ keys");
    zmq_close(out);
    zmq_close(in);
    zmq_ctx_term(ctx);
}

static void test_keyless_server(void)
{
    struct server s;
    struct peer p;
    char text[ERR_LEN];
    server_up(&s, ZMQ_ROUTER, false);
    peer_up(&p, ZMQ_DEALER, s.endpoint, &s.loader, s.key.public_z85);
    zmq_send(p.sock, "hello", 5, ZMQ_DONTWAIT);
    /* the client sees a few closed handshakes before the mismatch itself */
    CU_ASSERT_EQUAL(wait_verdict(&p, text), CLIENT_AUTH_MISMATCH);
    HAS(text, "speaks without keys");
    zmq_msg_t body;
    CU_ASSERT_EQUAL(router_recv(s.sock, &body, QUIET_MS), 0);
    peer_down(&p);
    server_down(&s);
}

static void test_wrong_server_key(void)
{
    struct server s;
    struct peer p;
    char text[ERR_LEN];
    server_up(&s, ZMQ_ROUTER, true);
    /* a listed client that expects another server */
    peer_up(&p, ZMQ_DEALER, s.endpoint, &s.loader, s.stranger.public_z85);
    zmq_send(p.sock, "hello", 5, ZMQ_DONTWAIT);
    CU_ASSERT_EQUAL(wait_verdict(&p, text), CLIENT_AUTH_SERVER_KEY);
    HAS(text, "did not prove the expected server key");
    HAS(text, "--server-key");
    zmq_msg_t body;
    CU_ASSERT_EQUAL(router_recv(s.sock, &body, QUIET_MS), 0);
    CU_ASSERT_EQUAL(zap_accepted(&s.zap), 0);
    peer_down(&p);
    server_down(&s);
}

static void test_pub_sub(void)
{
    struct server s;
    struct peer good, bad;
    char text[ERR_LEN];
    server_up(&s, ZMQ_PUB, true);
    peer_up(&good, ZMQ_SUB, s.endpoint, &s.evaluator, s.key.public_z85);
    peer_up(&bad, ZMQ_SUB, s.endpoint, &s.stranger, s.key.public_z85);
    /* PUB drops until a subscription arrives: publish until one is heard */
    bool got = false;
    double end = util_time_mono() + WAIT_S;
    while (!got && util_time_mono() < end) {
        zmq_send(s.sock, "METRIC", 6, ZMQ_SNDMORE);
        zmq_send(s.sock, "x", 1, 0);
        zmq_pollitem_t it = {.socket = good.sock, .events = ZMQ_POLLIN};
        got = zmq_poll(&it, 1, 50) == 1;
    }
    CU_ASSERT_TRUE_FATAL(got);
    char buf[16];
    CU_ASSERT_EQUAL(zmq_recv(good.sock, buf, sizeof buf, 0), 6);
    CU_ASSERT_EQUAL(wait_verdict(&bad, text), CLIENT_AUTH_REFUSED);
    for (int i = 0; i < 5; i++) {
        zmq_send(s.sock, "METRIC", 6, ZMQ_SNDMORE);
        zmq_send(s.sock, "y", 1, 0);
    }
    zmq_pollitem_t it = {.socket = bad.sock, .events = ZMQ_POLLIN};
    CU_ASSERT_EQUAL(zmq_poll(&it, 1, QUIET_MS), 0);
    CU_ASSERT(zap_refused(&s.zap, ZAP_REFUSED_UNKNOWN_KEY) >= 1);
    peer_down(&good);
    peer_down(&bad);
    server_down(&s);
}

/* A socket with the ZAP domain but no CURVE (libzmq then asks ZAP about
 * NULL connections), and a keyed socket in another domain: both refused
 * and counted under their reason. */
static void test_other_refusals(void)
{
    struct server s;
    struct peer p;
    char err[ERR_LEN];
    zmq_msg_t body;
    server_up(&s, ZMQ_ROUTER, true);
    void *plain = zmq_socket(s.ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(plain, ZMQ_LINGER, &linger, sizeof linger);
    CU_ASSERT_EQUAL_FATAL(zmq_setsockopt(plain, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)),
                          0);
    CU_ASSERT_EQUAL_FATAL(zmq_bind(plain, "tcp://127.0.0.1:*"), 0);
    char ep[256];
    size_t n = sizeof ep;
    CU_ASSERT_EQUAL_FATAL(zmq_getsockopt(plain, ZMQ_LAST_ENDPOINT, ep, &n), 0);
    peer_up(&p, ZMQ_DEALER, ep, NULL, NULL);
    zmq_send(p.sock, "hello", 5, ZMQ_DONTWAIT);
    double end = util_time_mono() + WAIT_S;
    while (zap_refused(&s.zap, ZAP_REFUSED_MECHANISM) == 0 && util_time_mono() < end)
        usleep(10000);
    CU_ASSERT(zap_refused(&s.zap, ZAP_REFUSED_MECHANISM) >= 1);
    CU_ASSERT_EQUAL(router_recv(plain, &body, QUIET_MS), 0);
    peer_down(&p);
    zmq_close(plain);

    void *other = zmq_socket(s.ctx, ZMQ_ROUTER);
    zmq_setsockopt(other, ZMQ_LINGER, &linger, sizeof linger);
    CU_ASSERT_EQUAL_FATAL(zap_server_apply(other, &s.zap, &s.key, err), 0);
    CU_ASSERT_EQUAL_FATAL(zmq_setsockopt(other, ZMQ_ZAP_DOMAIN, "elsewhere", 9), 0);
    CU_ASSERT_EQUAL_FATAL(zmq_bind(other, "tcp://127.0.0.1:*"), 0);
    n = sizeof ep;
    CU_ASSERT_EQUAL_FATAL(zmq_getsockopt(other, ZMQ_LAST_ENDPOINT, ep, &n), 0);
    peer_up(&p, ZMQ_DEALER, ep, &s.loader, s.key.public_z85);
    zmq_send(p.sock, "hello", 5, ZMQ_DONTWAIT);
    char text[ERR_LEN];
    CU_ASSERT_EQUAL(wait_verdict(&p, text), CLIENT_AUTH_REFUSED);
    CU_ASSERT(zap_refused(&s.zap, ZAP_REFUSED_DOMAIN) >= 1);
    CU_ASSERT_EQUAL(router_recv(other, &body, QUIET_MS), 0);
    CU_ASSERT_EQUAL(zap_accepted(&s.zap), 0);
    struct zap_refusal r[ZAP_RING];
    size_t k = zap_drain_refusals(&s.zap, r, ZAP_RING, NULL);
    CU_ASSERT_FATAL(k >= 2);
    CU_ASSERT_EQUAL(r[0].reason, ZAP_REFUSED_MECHANISM);
    CU_ASSERT_STRING_EQUAL(r[0].mechanism, "NULL");
    CU_ASSERT_EQUAL(r[k - 1].reason, ZAP_REFUSED_DOMAIN);
    CU_ASSERT_EQUAL(zap_drain_refusals(&s.zap, r, ZAP_RING, NULL), 0);
    peer_down(&p);
    zmq_close(other);
    server_down(&s);
}

static void test_needs_handler(void)
{
    char err[ERR_LEN];
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    struct zap_handler stopped;
    memset(&stopped, 0, sizeof stopped);
    struct keys_pair key;
    CU_ASSERT_EQUAL_FATAL(keys_generate(&key, err), 0);
    CU_ASSERT_EQUAL(zap_server_apply(sock, &stopped, &key, err), -1);
    HAS(err, "ZAP handler");
    CU_ASSERT_EQUAL(zap_server_apply(sock, NULL, &key, err), -1);
    struct zap_handler z1, z2;
    struct keys_allow none = {0};
    CU_ASSERT_EQUAL_FATAL(zap_start(&z1, ctx, &none, err), 0);
    CU_ASSERT_EQUAL(zap_start(&z2, ctx, &none, err), -1);    /* one per context */
    HAS(err, ZAP_ENDPOINT);
    struct keys_pair pub_only = key;
    pub_only.secret_z85[0] = '\0';
    CU_ASSERT_EQUAL(zap_server_apply(sock, &z1, &pub_only, err), -1);
    CU_ASSERT_EQUAL(zap_server_apply(sock, &z1, &key, err), 0);
    zap_stop(&z1);
    zap_stop(&z1);                      /* harmless twice */
    zmq_close(sock);
    CU_ASSERT_EQUAL(zmq_ctx_term(ctx), 0);
}

static void test_cli(void)
{
    char *dir = testing_tmpdir();
    char args[4200], out[8192], path[4200], err[ERR_LEN];
    snprintf(args, sizeof args, "keys new ev-1 --role evaluator --out %s/k", dir);
    int rc = testing_run_program("tools/lejepa", args, out, sizeof out);
    CU_ASSERT_EQUAL(rc, 0);
    HAS(out, "ev-1.key");
    HAS(out, "ev-1.pub");
    struct keys_pair kp;
    snprintf(path, sizeof path, "%s/k/ev-1.key", dir);
    CU_ASSERT_EQUAL_FATAL(keys_read_pair(path, &kp, err), 0);
    char line[128];
    snprintf(line, sizeof line, "evaluator ev-1 %s", kp.public_z85);
    HAS(out, line);
    /* the printed line parses as an allow-list entry */
    char text[256];
    snprintf(text, sizeof text, KEYS_ALLOW_MAGIC "\n%s\n", line);
    struct keys_allow a;
    CU_ASSERT_EQUAL(keys_allow_parse(&a, text, strlen(text), "pasted", err), 0);
    keys_allow_free(&a);
    CU_ASSERT_NOT_EQUAL(testing_run_program("tools/lejepa", args, out, sizeof out), 0);
    HAS(out, "already exists");
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa", "keys --help", out, sizeof out), 0);
    HAS(out, "allow-list");
    CU_ASSERT_NOT_EQUAL(testing_run_program("tools/lejepa", "keys new bad/name", out,
                                            sizeof out), 0);
    testing_rmtree(dir);
    free(dir);
}

/* The client programs' --key/--server-key: each refuses a half-given pair,
 * and lejepa-monitor and lejepa-eval exit 1 with the sentence when the
 * trainer's handshake fails (keys on one side only, an unlisted key). */
static void test_programs(void)
{
    char *dir = testing_tmpdir();
    char err[ERR_LEN], args[8192], out[8192];
    struct server s;
    struct keys_pair client;
    CU_ASSERT_EQUAL_FATAL(keys_generate(&client, err), 0);
    CU_ASSERT_EQUAL_FATAL(keys_write_pair(dir, "c", &client, false, NULL, NULL, err), 0);
    static const char *const progs[] = {"tools/lejepa-monitor", "eval/lejepa-eval",
                                        "loaders/lejepa-loader"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "--connect tcp://127.0.0.1:1 %s%s --key %s/c.key",
                 i == 2 ? "--data " : "", i == 2 ? dir : "", dir);
        CU_ASSERT_EQUAL(testing_run_program(progs[i], args, out, sizeof out), 2);
        HAS(out, "--key needs --server-key");
        snprintf(args, sizeof args, "--help");
        CU_ASSERT_EQUAL(testing_run_program(progs[i], args, out, sizeof out), 0);
        HAS(out, "--server-key FILE");
    }
    char mon_args[] = "--once --no-table --out %s/m --connect %s";

    /* keyed monitor, keyless trainer */
    server_up(&s, ZMQ_ROUTER, false);
    CU_ASSERT_EQUAL_FATAL(keys_write_pair(dir, "t", &s.key, false, NULL, NULL, err), 0);
    int n = snprintf(args, sizeof args, mon_args, dir, s.endpoint);
    snprintf(args + n, sizeof args - (size_t)n, " --key %s/c.key --server-key %s/t.pub", dir,
             dir);
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa-monitor", args, out, sizeof out), 1);
    HAS(out, "speaks without keys");
    server_down(&s);

    /* keyless monitor and an unlisted evaluator key, keyed trainer */
    server_up(&s, ZMQ_ROUTER, true);
    CU_ASSERT_EQUAL_FATAL(keys_write_pair(dir, "t", &s.key, true, NULL, NULL, err), 0);
    snprintf(args, sizeof args, mon_args, dir, s.endpoint);
    CU_ASSERT_EQUAL(testing_run_program("tools/lejepa-monitor", args, out, sizeof out), 1);
    HAS(out, "requires CurveZMQ keys");
    /* a keyless loader: the trainer closes most keyless greetings before
     * the mismatch can be read, and the loader reopens its socket with
     * backoff, so its verdict comes from handshakes closed in a row */
    char data[4200], log[4300], loader[4200];
    for (int i = 0; i < 2; i++) {
        snprintf(data, sizeof data, "%s/data/%s/a", dir, i ? "val" : "train");
        CU_ASSERT_FATAL(util_mkdir_p(data, err) == 0);
        snprintf(log, sizeof log, "%s/1.png", data);    /* indexed, never decoded */
        CU_ASSERT_FATAL(util_write_file_atomic(log, "x", 1, err) == 0);
    }
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/loader.log", dir);
    snprintf(loader, sizeof loader, "%s", testing_program("loaders/lejepa-loader"));
    char *largv[] = {loader, "--connect", s.endpoint, "--data", data, "--workers", "1", NULL};
    CU_ASSERT_EQUAL(testing_wait_exit(testing_spawn(log, true, largv), LOADER_VERDICT_S), 1);
    char *text = util_read_file(log, NULL, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    HAS(text, "requires CurveZMQ keys");
    free(text);
    snprintf(args, sizeof args, "--connect %s --out %s/e --key %s/c.key --server-key %s/t.pub",
             s.endpoint, dir, dir, dir);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 1);
    HAS(out, "refused this client's key");
    CU_ASSERT(zap_refused(&s.zap, ZAP_REFUSED_UNKNOWN_KEY) >= 1);
    server_down(&s);
    testing_rmtree(dir);
    free(dir);
}

int main(void)
{
    if (!zmq_has("curve")) {
        fprintf(stderr, "libzmq without CURVE: skipped\n");
        return 77;
    }
    static const struct testing_case cases[] = {
        {"key pair round trip", test_pair_round_trip},
        {"key file errors", test_key_file_errors},
        {"allow-list", test_allow_list},
        {"User-Id", test_user_id},
        {"allowed client", test_allowed_client},
        {"unknown key refused", test_unknown_key},
        {"keyless client, keyed server", test_keyless_client},
        {"keyless client, closed greetings", test_keyless_closed},
        {"keyed client, keyless server", test_keyless_server},
        {"wrong server key", test_wrong_server_key},
        {"pub/sub with keys", test_pub_sub},
        {"wrong mechanism, wrong domain", test_other_refusals},
        {"no keys without the handler", test_needs_handler},
        {"lejepa keys new", test_cli},
        {"client programs with keys", test_programs},
        {NULL, NULL},
    };
    return testing_run("keys", cases);
}
