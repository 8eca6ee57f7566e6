/*
 * lejepa_runnet.c: keys, allow-list and free ports for `lejepa run`
 * (lejepa_runnet.h). It writes key files and the allow-list through
 * proto/keys.h and never opens a ZeroMQ socket; the port probe binds a
 * plain TCP socket for an instant and closes it.
 */
#include "lejepa_runnet.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.h>

#include "keys.h"
#include "lejepa_proc.h"
#include "util.h"

void run_keys_path(char *out, size_t cap, const char *dir, const char *name,
                   const char *suffix)
{
    snprintf(out, cap, "%s/%s.%s", dir, name, suffix);
}

/* NAME's pair in dir: read when both files are there (and match), made
 * when neither is; one without the other is an error. */
static int ensure_pair(const char *dir, const char *name, struct keys_pair *kp,
                       bool *made, char *err)
{
    char key[4200], pub[4200], pub_z85[KEYS_Z85_LEN + 1];
    run_keys_path(key, sizeof key, dir, name, "key");
    run_keys_path(pub, sizeof pub, dir, name, "pub");
    bool have_key = access(key, F_OK) == 0, have_pub = access(pub, F_OK) == 0;
    *made = false;
    if (have_key != have_pub)
        return errf(err,
                    "%s exists but %s does not: remove it to have the pair "
                    "made again, or put its other half back",
                    have_key ? key : pub, have_key ? pub : key);
    if (!have_key) {
        if (keys_generate(kp, err) < 0 ||
            keys_write_pair(dir, name, kp, false, NULL, NULL, err) < 0)
            return -1;
        *made = true;
        return 0;
    }
    if (keys_read_pair(key, kp, err) < 0 ||
        keys_read_public(pub, pub_z85, err) < 0)
        return -1;
    if (strcmp(pub_z85, kp->public_z85) != 0)
        return errf(err,
                    "%s is not the public half of %s: remove both to have "
                    "a new pair made",
                    pub, key);
    return 0;
}

/* Whether client c (public key z85) is listed; -1 with err when it is,
 * but not as c, or when its name is listed with another key. */
static int listed(const struct keys_allow *a, const struct run_keys_client *c,
                  const char *z85, char *err)
{
    uint8_t bin[KEYS_BIN_LEN];
    CHECK(zmq_z85_decode(bin, z85) != NULL);
    const struct keys_allow_entry *e = keys_allow_find(a, bin);
    if (e && (e->role != c->role || strcmp(e->name, c->name) != 0))
        return errf(err,
                    "%s:%d lists the key of %s as %s %s, and this run needs it "
                    "as %s %s: fix or delete that line",
                    a->path, e->line, c->name, msg_role_name(e->role), e->name,
                    msg_role_name(c->role), c->name);
    if (e)
        return 1;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].name, c->name) == 0)
            return errf(
                err,
                "%s:%d lists %s with another key than this run's: delete "
                "that line (it is written again) or use another --keys DIR",
                a->path, a->e[i].line, c->name);
    return 0;
}

/* The allow-list with every client in it; lines already there are kept. */
static int write_allow(const char *dir, const struct run_keys_client *clients,
                       const struct keys_pair *pairs, int n, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RUN_KEYS_ALLOW);
    struct keys_allow a = {0};
    char *text = NULL;
    size_t len = 0;
    int rc = -1, added = 0;
    if (access(path, F_OK) == 0) {
        if (keys_allow_load(&a, path, err) < 0)
            return -1;
        text = util_read_file(path, &len, err);
        if (!text)
            goto cleanup;
    } else {
        text = xstrdup(KEYS_ALLOW_MAGIC
                       "\n"
                       "# written by lejepa run --keys; add clients of other "
                       "machines as ROLE NAME KEY lines\n");
        len = strlen(text);
    }
    size_t cap = len + (size_t)n * 160 + 2;
    text = xrealloc(text, cap);
    if (len > 0 && text[len - 1] != '\n')
        text[len++] = '\n';
    for (int i = 0; i < n; i++) {
        int r = listed(&a, &clients[i], pairs[i].public_z85, err);
        if (r < 0)
            goto cleanup;
        if (r == 0) {
            len += (size_t)snprintf(text + len, cap - len, "%-9s %-12s %s\n",
                                    msg_role_name(clients[i].role),
                                    clients[i].name, pairs[i].public_z85);
            added++;
        }
    }
    if (added && util_write_file_atomic(path, text, len, err) < 0)
        goto cleanup;
    if (added)
        proc_say("keys: %s lists %d more client%s", path, added,
                 added == 1 ? "" : "s");
    rc = 0;
cleanup:
    free(text);
    keys_allow_free(&a);
    return rc;
}

int run_keys_prepare(const char *dir, const struct run_keys_client *clients,
                     int n, char *err)
{
    struct keys_pair trainer, *pairs = xcalloc((size_t)n, sizeof *pairs);
    char made[1024] = "";
    int rc = -1;
    bool fresh;
    if (util_mkdir_p(dir, err) < 0 ||
        ensure_pair(dir, RUN_KEYS_TRAINER, &trainer, &fresh, err) < 0)
        goto cleanup;
    if (fresh)
        snprintf(made, sizeof made, " %s", RUN_KEYS_TRAINER);
    for (int i = 0; i < n; i++) {
        if (ensure_pair(dir, clients[i].name, &pairs[i], &fresh, err) < 0)
            goto cleanup;
        size_t m = strlen(made);
        if (fresh && m + 80 < sizeof made)
            snprintf(made + m, sizeof made - m, " %s", clients[i].name);
    }
    proc_say("keys in %s/: %s%s", dir, made[0] ? "made" : "all there, reused",
             made);
    if (write_allow(dir, clients, pairs, n, err) < 0)
        goto cleanup;
    rc = 0;
cleanup:
    memset(&trainer, 0, sizeof trainer);
    memset(pairs, 0, (size_t)n * sizeof *pairs);
    free(pairs);
    return rc;
}

/* ---- ports --------------------------------------------------------------- */

/* 1: port is free on host, 0: in use, -1: cannot tell (host not local,
 * no address). SO_REUSEADDR as libzmq sets it, so a port in TIME_WAIT
 * counts as free, as it is for the trainer. */
static int port_free(const char *host, int port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    bool wildcard = strcmp(host, "*") == 0;
    if (getaddrinfo(wildcard ? NULL : host, service, &hints, &res) != 0 || !res)
        return -1;
    int verdict = -1;
    int s = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                   res->ai_protocol);
    if (s >= 0) {
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, res->ai_addr, res->ai_addrlen) == 0)
            verdict = 1;
        else if (errno == EADDRINUSE)
            verdict = 0;
        close(s);
    }
    freeaddrinfo(res);
    return verdict;
}

int run_port_of(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    if (strncmp(endpoint, "tcp://", 6) != 0 || !colon || colon < endpoint + 6)
        return 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    return *end || p < 1 || p > 65535 ? 0 : (int)p;
}

int run_port_pick(char *endpoint, size_t cap, int avoid, char *err)
{
    int port = run_port_of(endpoint);
    if (!port)
        return 0;
    const char *colon = strrchr(endpoint, ':');
    char host[512];
    snprintf(host, sizeof host, "%.*s", (int)(colon - endpoint - 6),
             endpoint + 6);
    /* [::1] as getaddrinfo wants it */
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    if (port != avoid && port_free(host, port) != 0)
        return 0;
    for (int p = port + 1; p <= 65535 && p <= port + RUN_PORT_TRIES; p++) {
        if (p == avoid || port_free(host, p) != 1)
            continue;
        char tail[16];
        snprintf(tail, sizeof tail, ":%d", p);
        size_t head = (size_t)(colon - endpoint);
        if (head + strlen(tail) >= cap)
            return errf(err, "%s: endpoint too long", endpoint);
        memcpy(endpoint + head, tail, strlen(tail) + 1);
        return 1;
    }
    return errf(err,
                "%s: port %d is in use and so are the %d above it: stop "
                "the other run or set run.endpoint and run.broadcast",
                endpoint, port, RUN_PORT_TRIES);
}
