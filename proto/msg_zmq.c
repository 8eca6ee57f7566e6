/*
 * msg_zmq.c: the framing of messages on ZeroMQ sockets. Work socket: [the
 * peer's identity frame, ROUTER side only] + one msgpack frame. Broadcast
 * (PUB/SUB): a topic frame holding the kind name, so subscribers filter per
 * kind, then the msgpack frame. Sends hand the encoded buffer to libzmq
 * without a copy; receives decode in place, so blobs point into the frame.
 */
#include "msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MSG_ID_MAX 255

static void free_buffer(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Encodes m into a zero-copy frame (its buffer freed with the frame);
 * -1 with err, errno EINVAL, when m cannot be encoded. Encoding comes
 * before any frame is sent, so a message that cannot be encoded never
 * leaves an identity or topic frame half-sent on the socket. */
static int encode_frame(zmq_msg_t *frame, const struct msg *m, char *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (msg_encode(m, &sb, err) < 0) {
        msgpack_sbuffer_destroy(&sb);
        errno = EINVAL;
        return -1;
    }
    size_t size = sb.size;
    char *data = msgpack_sbuffer_release(&sb);
    if (zmq_msg_init_data(frame, data, size, free_buffer, NULL) != 0) {
        free(data);
        errf(err, "zmq_msg_init_data: %s", zmq_strerror(zmq_errno()));
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Sends an encoded frame as the last one; the frame is consumed. */
static int send_frame(void *sock, zmq_msg_t *frame, const struct msg *m,
                      int flags, char *err)
{
    if (zmq_msg_send(frame, sock, flags) < 0) {
        int e = zmq_errno();
        zmq_msg_close(frame);
        errf(err, "send %s: %s", msg_kind_name(m->kind), zmq_strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

/* [head frame, when head] then the message, with flags on both. */
static int send_with_head(void *sock, const void *head, size_t head_len,
                          const char *what, const struct msg *m, int flags,
                          char *err)
{
    zmq_msg_t frame;
    if (encode_frame(&frame, m, err) != 0)
        return -1;
    if (head && zmq_send(sock, head, head_len, ZMQ_SNDMORE | flags) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&frame);
        errf(err, "send %s frame: %s", what, zmq_strerror(e));
        errno = e;
        return -1;
    }
    /* the head frame took the pipe: the body follows it there */
    return send_frame(sock, &frame, m, flags, err);
}

int msg_send(void *sock, const struct msg *m, char *err)
{
    return send_with_head(sock, NULL, 0, NULL, m, 0, err);
}

int msg_send_to(void *sock, const void *id, size_t id_len, const struct msg *m, char *err)
{
    return send_with_head(sock, id, id_len, "identity", m, 0, err);
}

int msg_send_to_nb(void *sock, const void *id, size_t id_len, const struct msg *m,
                   char *err)
{
    return send_with_head(sock, id, id_len, "identity", m, ZMQ_DONTWAIT, err);
}

static int publish(void *sock, const struct msg *m, int flags, char *err)
{
    const char *topic = msg_kind_name(m->kind);
    if (!topic)
        return errf(err, "publish: unknown kind %d", (int)m->kind);
    return send_with_head(sock, topic, strlen(topic), "topic", m, flags, err);
}

int msg_publish(void *sock, const struct msg *m, char *err)
{
    return publish(sock, m, 0, err);
}

int msg_publish_nb(void *sock, const struct msg *m, char *err)
{
    return publish(sock, m, ZMQ_DONTWAIT, err);
}

static int has_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof more;
    if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) != 0)
        return 0;
    return more;
}

/* Discards the rest of a multipart message. */
static void drain(void *sock)
{
    while (has_more(sock)) {
        zmq_msg_t part;
        if (zmq_msg_init(&part) != 0)
            return;
        int rc = zmq_msg_recv(&part, sock, 0);
        zmq_msg_close(&part);
        if (rc < 0)
            return;
    }
}

/* Receives one frame into an initialised f; keeps errno for the caller. */
static int recv_frame(void *sock, zmq_msg_t *f, int flags, const char *what, char *err)
{
    if (zmq_msg_recv(f, sock, flags) >= 0)
        return 0;
    int e = zmq_errno();
    errf(err, "receive %s: %s", what, zmq_strerror(e));
    errno = e;
    return -1;
}

/* The last frame: nothing may follow it; then decode in place. */
static int recv_body(void *sock, int flags, zmq_msg_t *frame, struct msg *m,
                     const struct msg_limits *lim, struct msg_arena *a, char *err)
{
    if (recv_frame(sock, frame, flags, "message", err) < 0)
        return -1;
    if (has_more(sock)) {
        drain(sock);
        return errf(err, "unexpected extra frames after the message");
    }
    return msg_decode(m, zmq_msg_data(frame), zmq_msg_size(frame), lim, a, err);
}

int msg_recv(void *sock, int flags, zmq_msg_t *frame, struct msg *m,
             const struct msg_limits *lim, struct msg_arena *a, char *err)
{
    CHECK(zmq_msg_init(frame) == 0);
    return recv_body(sock, flags, frame, m, lim, a, err);
}

int msg_recv_from(void *sock, int flags, void *id, size_t *id_len, zmq_msg_t *frame,
                  struct msg *m, const struct msg_limits *lim, struct msg_arena *a,
                  char *err)
{
    CHECK(zmq_msg_init(frame) == 0);
    if (recv_frame(sock, frame, flags, "identity frame", err) < 0)
        return -1;
    size_t n = zmq_msg_size(frame);
    if (n > MSG_ID_MAX) {
        drain(sock);
        return errf(err, "identity frame of %zu bytes", n);
    }
    memcpy(id, zmq_msg_data(frame), n);
    *id_len = n;
    if (!has_more(sock))
        return errf(err, "identity frame without a message");
    return recv_body(sock, 0, frame, m, lim, a, err);
}

int msg_recv_sub(void *sock, int flags, zmq_msg_t *frame, struct msg *m,
                 const struct msg_limits *lim, struct msg_arena *a, char *err)
{
    char topic[32];
    CHECK(zmq_msg_init(frame) == 0);
    if (recv_frame(sock, frame, flags, "topic frame", err) < 0)
        return -1;
    size_t n = zmq_msg_size(frame);
    if (n >= sizeof topic) {
        drain(sock);
        return errf(err, "topic frame of %zu bytes", n);
    }
    memcpy(topic, zmq_msg_data(frame), n);
    topic[n] = '\0';
    if (!has_more(sock))
        return errf(err, "topic '%s' without a message", topic);
    if (recv_body(sock, 0, frame, m, lim, a, err) < 0)
        return -1;
    if (strcmp(topic, msg_kind_name(m->kind)) != 0)
        return errf(err, "topic '%s' carries a %s message", topic, msg_kind_name(m->kind));
    return 0;
}
