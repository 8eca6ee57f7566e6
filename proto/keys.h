/*
 * keys.h: CurveZMQ key files and the trainer's allow-list (proto/PROTOCOL.md,
 * "Keys and roles"). A key pair is two text files, NAME.key (public and
 * secret, mode 0600) and NAME.pub (public only); the allow-list ties each
 * client's public key to one role and one name. Everything here is files
 * and text: the ZAP handler that uses the allow-list is zap.h, the client
 * sockets that use a key pair are client.h. Keys are kept as libzmq's Z85
 * text (40 characters for 32 bytes), the form every zmq_setsockopt takes.
 */
#ifndef LEJEPA_KEYS_H
#define LEJEPA_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#define KEYS_MAGIC "# lejepa curve key v1"
#define KEYS_ALLOW_MAGIC "# lejepa allow-list v1"
#define KEYS_Z85_LEN 40                 /* Z85 text of a 32-byte key */
#define KEYS_BIN_LEN 32
#define KEYS_NAME_MAX 65                /* names: 1..64 of [A-Za-z0-9._@-] */
#define KEYS_ALLOW_MAX 4096             /* entries in one allow-list */
#define KEYS_FILE_MAX 4096              /* bytes of a .key/.pub file */
#define KEYS_ALLOW_FILE_MAX (1u << 20)  /* bytes of an allow-list */

struct keys_pair {
    char public_z85[KEYS_Z85_LEN + 1];
    char secret_z85[KEYS_Z85_LEN + 1];  /* "" when only the public key is known */
};

/* A fresh pair from zmq_curve_keypair; -1 with err (libzmq without CURVE). */
int keys_generate(struct keys_pair *kp, char *err);

/* True when s is 40 characters of Z85 that decode to a key; otherwise
 * false with the reason in err (may be NULL). */
bool keys_z85_valid(const char *s, char *err);

/* Names of key pairs and allow-list entries: 1..64 of [A-Za-z0-9._@-], not
 * starting with '.'; -1 with err naming what is wrong. */
int keys_name_check(const char *name, char *err);

/* Writes DIR/NAME.key (mode 0600) and DIR/NAME.pub (mode 0644), each
 * atomically; DIR is created if needed. An existing file is replaced only
 * when overwrite is set. The paths written go to key_path and pub_path
 * (4096 bytes each, may be NULL). 0 or -1 with err. */
int keys_write_pair(const char *dir, const char *name, const struct keys_pair *kp,
                    bool overwrite, char *key_path, char *pub_path, char *err);

/* Reads a NAME.key file: magic line, both keys, the public key derived from
 * the secret one, and no access for group or others (the hint says chmod
 * 600). -1 with err naming the file and what is wrong. */
int keys_read_pair(const char *path, struct keys_pair *kp, char *err);

/* Reads the public key of a NAME.pub file into z85 (41 bytes). A file that
 * holds a secret key is refused: secrets are never handed around. */
int keys_read_public(const char *path, char *z85, char *err);

/* ---- the allow-list ----------------------------------------------------- */

struct keys_allow_entry {
    enum msg_role role;
    char name[KEYS_NAME_MAX];
    char public_z85[KEYS_Z85_LEN + 1];
    uint8_t public_bin[KEYS_BIN_LEN];
    int line;                           /* where it was listed */
};

struct keys_allow {
    struct keys_allow_entry *e;         /* n entries, owned */
    size_t n;
    char path[4096];                    /* the file, for messages */
};

/* Parses an allow-list (format in PROTOCOL.md): the magic line, then one
 * `ROLE NAME KEY` per line, KEY being 40 characters of Z85 or the path of a
 * .pub file (relative paths are taken from the allow-list's directory);
 * `#` starts a comment. Errors name path:line. The list is empty before a
 * parse and after a failed one; free it with keys_allow_free. */
int keys_allow_load(struct keys_allow *a, const char *path, char *err);
/* The same from text already in memory; path only names it in messages
 * and anchors relative .pub paths. */
int keys_allow_parse(struct keys_allow *a, const char *text, size_t len,
                     const char *path, char *err);
void keys_allow_free(struct keys_allow *a);

/* The entry listing this 32-byte public key, or NULL. */
const struct keys_allow_entry *keys_allow_find(const struct keys_allow *a,
                                               const uint8_t *key);

/* ---- --key and --server-key, shared by every client program ------------- */

/* getopt_long values of the two options (above any short option). */
#define KEYS_OPT_KEY 0x4b01
#define KEYS_OPT_SERVER_KEY 0x4b02
#define KEYS_CLIENT_LONGOPTS                                                  \
    {"key", required_argument, NULL, KEYS_OPT_KEY},                           \
    {"server-key", required_argument, NULL, KEYS_OPT_SERVER_KEY}
#define KEYS_CLIENT_HELP                                                      \
    "  --key FILE           this client's key pair (NAME.key from `lejepa keys\n" \
    "                       new`); needs --server-key. Without both, no CURVE\n" \
    "  --server-key FILE    the trainer's public key (its .pub file); the\n"   \
    "                       client talks only to the trainer that holds it\n"

struct keys_client {
    const char *key_path, *server_key_path;     /* from the command line */
    bool enabled;                               /* both given and read */
    struct keys_pair pair;                      /* this client's */
    char server_public[KEYS_Z85_LEN + 1];       /* the trainer's */
};

/* getopt_long's value opt with optarg arg: returns true when it was one of
 * the two options (stored), false for any other option. */
bool keys_client_option(struct keys_client *k, int opt, const char *arg);
/* After parsing: reads both files, or dies (exit 2) with the file and the
 * reason when one is missing, unreadable or only one option was given. */
void keys_client_load(struct keys_client *k);

#endif
