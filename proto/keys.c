/*
 * keys.c: CurveZMQ key files, the allow-list and the clients' --key and
 * --server-key (keys.h). Only files and text: no socket is touched here.
 * Every error names the file (and line) and says what to do about it,
 * because the person reading it is setting up a run, not debugging C.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "util.h"

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int keys_generate(struct keys_pair *kp, char *err)
{
    memset(kp, 0, sizeof *kp);
    if (!zmq_has("curve"))
        return errf(err, "this libzmq was built without CURVE (zmq_has(\"curve\") is false)");
    if (zmq_curve_keypair(kp->public_z85, kp->secret_z85) != 0)
        return errf(err, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    return 0;
}

bool keys_z85_valid(const char *s, char *err)
{
    size_t n = strlen(s);
    if (n != KEYS_Z85_LEN) {
        errf(err, "a key is %d characters of Z85 text, got %zu", KEYS_Z85_LEN, n);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!strchr(z85_chars, s[i])) {
            errf(err, "character %zu ('%c') is not Z85", i + 1, s[i]);
            return false;
        }
    uint8_t bin[KEYS_BIN_LEN];
    if (!zmq_z85_decode(bin, s)) {
        errf(err, "not a Z85-encoded key");
        return false;
    }
    return true;
}

int keys_name_check(const char *name, char *err)
{
    size_t n = strlen(name);
    if (n == 0 || n >= KEYS_NAME_MAX)
        return errf(err, "name '%.80s': expected 1..%d characters", name, KEYS_NAME_MAX - 1);
    if (name[0] == '.')
        return errf(err, "name '%s' must not start with '.'", name);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@';
        if (!ok)
            return errf(err, "name '%s': only letters, digits and . _ - @ are allowed", name);
    }
    return 0;
}

/* One key file: written with the mode set before any byte of it. */
static int write_key_file(const char *path, mode_t mode, const char *text, bool overwrite,
                          char *err)
{
    if (!overwrite && access(path, F_OK) == 0)
        return errf(err, "%s already exists: remove it first (or --force) to replace it",
                    path);
    struct atomic_file f;
    if (util_atomic_open(&f, path, err) < 0)
        return -1;
    /* The temp file is created 0644: tighten it before the secret goes in. */
    if (fchmod(f.fd, mode) != 0) {
        errf(err, "%s: cannot set mode %03o: %s", f.tmp, (unsigned)mode, strerror(errno));
        util_atomic_abort(&f);
        return -1;
    }
    if (util_atomic_write(&f, text, strlen(text), err) < 0)
        return -1;
    return util_atomic_commit(&f, err);
}

int keys_write_pair(const char *dir, const char *name, const struct keys_pair *kp,
                    bool overwrite, char *key_path, char *pub_path, char *err)
{
    char kpath[4096], ppath[4096], text[512];
    if (keys_name_check(name, err) < 0 || util_mkdir_p(dir, err) < 0)
        return -1;
    if (!keys_z85_valid(kp->public_z85, NULL) || !keys_z85_valid(kp->secret_z85, NULL))
        return errf(err, "internal: key pair to write is not valid Z85");
    if ((size_t)snprintf(kpath, sizeof kpath, "%s/%s.key", dir, name) >= sizeof kpath ||
        (size_t)snprintf(ppath, sizeof ppath, "%s/%s.pub", dir, name) >= sizeof ppath)
        return errf(err, "%s: path too long", dir);
    snprintf(text, sizeof text,
             KEYS_MAGIC "\n"
             "# CurveZMQ key pair of '%s'. Keep it secret: mode 0600, never copied\n"
             "# to another machine than the one that runs %s. Its public half is %s.pub.\n"
             "public = %s\n"
             "secret = %s\n",
             name, name, name, kp->public_z85, kp->secret_z85);
    if (write_key_file(kpath, 0600, text, overwrite, err) < 0)
        return -1;
    snprintf(text, sizeof text,
             KEYS_MAGIC "\n"
             "# CurveZMQ public key of '%s': safe to share (allow-list, --server-key).\n"
             "public = %s\n",
             name, kp->public_z85);
    if (write_key_file(ppath, 0644, text, overwrite, err) < 0)
        return -1;
    if (key_path)
        snprintf(key_path, 4096, "%s", kpath);
    if (pub_path)
        snprintf(pub_path, 4096, "%s", ppath);
    return 0;
}

/* Strips leading and trailing blanks (and a CR) in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Reads one key file (public, and secret when secret_out). want_secret:
 * 1 = must hold one, 0 = must not, checked here so messages name the file. */
static int read_key_file(const char *path, char *public_out, char *secret_out,
                         bool want_secret, char *err)
{
    char buf[KEYS_FILE_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return errf(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (want_secret && (st.st_mode & 077)) {
        close(fd);
        return errf(err, "%s: holds a secret key but is readable by others (mode %03o): "
                    "run chmod 600 %s", path, (unsigned)(st.st_mode & 0777), path);
    }
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (n < 0)
        return errf(err, "%s: cannot read: %s", path, strerror(e));
    if (n > KEYS_FILE_MAX)
        return errf(err, "%s: larger than %d bytes: not a key file", path, KEYS_FILE_MAX);
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n))
        return errf(err, "%s: binary data: not a key file", path);

    char *save = NULL;
    char *line = strtok_r(buf, "\n", &save);
    if (!line || strcmp(trim(line), KEYS_MAGIC) != 0) {
        if (line && strncmp(line, "# lejepa curve key v", 20) == 0)
            return errf(err, "%s: '%s' is a version this program does not read "
                        "(it reads '%s')", path, line, KEYS_MAGIC);
        return errf(err, "%s: not a lejepa key file (the first line must be '%s'; "
                    "make one with `lejepa keys new`)", path, KEYS_MAGIC);
    }
    char pub[KEYS_Z85_LEN + 1] = "", sec[KEYS_Z85_LEN + 1] = "";
    int lineno = 1;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return errf(err, "%s:%d: expected 'public = KEY' or 'secret = KEY'", path, lineno);
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        char *slot = strcmp(k, "public") == 0 ? pub : strcmp(k, "secret") == 0 ? sec : NULL;
        if (!slot)
            return errf(err, "%s:%d: unknown key '%.40s' (expected public or secret)",
                        path, lineno, k);
        if (*slot)
            return errf(err, "%s:%d: %s given twice", path, lineno, k);
        char why[ERR_LEN];
        if (!keys_z85_valid(v, why))
            return errf(err, "%s:%d: bad %s key: %s", path, lineno, k, why);
        memcpy(slot, v, KEYS_Z85_LEN + 1);
    }
    if (!pub[0])
        return errf(err, "%s: no 'public = KEY' line", path);
    if (want_secret && !sec[0])
        return errf(err, "%s: no 'secret = KEY' line: this is a public key; --key wants "
                    "the NAME.key file", path);
    if (!want_secret && sec[0])
        return errf(err, "%s: holds a secret key: give the NAME.pub file here, and never "
                    "hand a .key file to anyone", path);
    if (want_secret) {
        char derived[KEYS_Z85_LEN + 1];
        if (zmq_curve_public(derived, sec) != 0)
            return errf(err, "%s: zmq_curve_public: %s", path, zmq_strerror(zmq_errno()));
        if (strcmp(derived, pub) != 0)
            return errf(err, "%s: the public key does not belong to the secret key "
                        "(file edited by hand?)", path);
        memcpy(secret_out, sec, sizeof sec);
    }
    memcpy(public_out, pub, sizeof pub);
    return 0;
}

int keys_read_pair(const char *path, struct keys_pair *kp, char *err)
{
    memset(kp, 0, sizeof *kp);
    return read_key_file(path, kp->public_z85, kp->secret_z85, true, err);
}

int keys_read_public(const char *path, char *z85, char *err)
{
    z85[0] = '\0';
    return read_key_file(path, z85, NULL, false, err);
}

/* ---- the allow-list ----------------------------------------------------- */

static int parse_role(const char *s, enum msg_role *r)
{
    for (int i = MSG_ROLE_LOADER; i <= MSG_ROLE_MONITOR; i++)
        if (strcmp(s, msg_role_name((enum msg_role)i)) == 0) {
            *r = (enum msg_role)i;
            return 0;
        }
    return -1;
}

/* KEY field: Z85 text, or a .pub file relative to the allow-list's folder. */
static int entry_key(struct keys_allow_entry *e, const char *field, const char *path,
                     int lineno, char *err)
{
    char why[ERR_LEN];
    bool looks_z85 = strlen(field) == KEYS_Z85_LEN && !strstr(field, ".pub");
    if (looks_z85 || !(strchr(field, '/') || strstr(field, ".pub"))) {
        if (!keys_z85_valid(field, why))
            return errf(err, "%s:%d: bad key '%.48s': %s (or give the path of a .pub file)",
                        path, lineno, field, why);
        memcpy(e->public_z85, field, KEYS_Z85_LEN + 1);
        return 0;
    }
    char file[4096];
    if (field[0] == '/') {
        snprintf(file, sizeof file, "%s", field);
    } else {
        char *copy = xstrdup(path);
        snprintf(file, sizeof file, "%s/%s", dirname(copy), field);
        free(copy);
    }
    if (keys_read_public(file, e->public_z85, why) < 0)
        return errf(err, "%s:%d: %s", path, lineno, why);
    return 0;
}

int keys_allow_parse(struct keys_allow *a, const char *text, size_t len, const char *path,
                     char *err)
{
    memset(a, 0, sizeof *a);
    snprintf(a->path, sizeof a->path, "%s", path);
    if (memchr(text, '\0', len))
        return errf(err, "%s: binary data: not an allow-list", path);
    char *buf = xmalloc(len + 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    size_t cap = 0;
    int lineno = 0, rc = -1;
    char *save = NULL;
    /* strtok_r would merge empty lines and lose line numbers: split by hand */
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *s = trim(line);
        if (lineno == 1) {
            if (strcmp(s, KEYS_ALLOW_MAGIC) != 0) {
                errf(err, "%s:1: the first line must be '%s' (format in "
                     "proto/PROTOCOL.md, Keys and roles)", path, KEYS_ALLOW_MAGIC);
                goto cleanup;
            }
            continue;
        }
        if (!*s || *s == '#')
            continue;
        char *f[4];
        int nf = 0;
        for (char *t = strtok_r(s, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
            if (nf < 4)
                f[nf++] = t;
            else
                nf++;
        if (nf != 3) {
            errf(err, "%s:%d: expected 'ROLE NAME KEY', got %d field%s", path, lineno, nf,
                 nf == 1 ? "" : "s");
            goto cleanup;
        }
        if (a->n == KEYS_ALLOW_MAX) {
            errf(err, "%s:%d: more than %d entries", path, lineno, KEYS_ALLOW_MAX);
            goto cleanup;
        }
        struct keys_allow_entry e = {.line = lineno};
        char why[ERR_LEN];
        if (parse_role(f[0], &e.role) < 0) {
            errf(err, "%s:%d: unknown role '%.40s' (loader, evaluator or monitor)", path,
                 lineno, f[0]);
            goto cleanup;
        }
        if (keys_name_check(f[1], why) < 0) {
            errf(err, "%s:%d: %s", path, lineno, why);
            goto cleanup;
        }
        snprintf(e.name, sizeof e.name, "%s", f[1]);
        if (entry_key(&e, f[2], path, lineno, err) < 0)
            goto cleanup;
        CHECK(zmq_z85_decode(e.public_bin, e.public_z85) != NULL);
        for (size_t i = 0; i < a->n; i++) {
            if (memcmp(a->e[i].public_bin, e.public_bin, KEYS_BIN_LEN) == 0) {
                errf(err, "%s:%d: this key is already listed at line %d (%s %s): one key, "
                     "one client", path, lineno, a->e[i].line,
                     msg_role_name(a->e[i].role), a->e[i].name);
                goto cleanup;
            }
            if (strcmp(a->e[i].name, e.name) == 0) {
                errf(err, "%s:%d: name '%s' is already listed at line %d", path, lineno,
                     e.name, a->e[i].line);
                goto cleanup;
            }
        }
        if (a->n == cap) {
            cap = cap ? 2 * cap : 16;
            a->e = xrealloc(a->e, cap * sizeof *a->e);
        }
        a->e[a->n++] = e;
    }
    rc = 0;
cleanup:
    free(buf);
    if (rc < 0)
        keys_allow_free(a);
    return rc;
}

int keys_allow_load(struct keys_allow *a, const char *path, char *err)
{
    memset(a, 0, sizeof *a);
    struct stat st;
    if (stat(path, &st) != 0)
        return errf(err, "%s: cannot open the allow-list: %s", path, strerror(errno));
    if (st.st_size > (off_t)KEYS_ALLOW_FILE_MAX)
        return errf(err, "%s: larger than %u bytes: not an allow-list", path,
                    KEYS_ALLOW_FILE_MAX);
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text)
        return -1;
    int rc = keys_allow_parse(a, text, len, path, err);
    free(text);
    return rc;
}

void keys_allow_free(struct keys_allow *a)
{
    free(a->e);
    a->e = NULL;
    a->n = 0;
}

const struct keys_allow_entry *keys_allow_find(const struct keys_allow *a, const uint8_t *key)
{
    for (size_t i = 0; i < a->n; i++)
        if (memcmp(a->e[i].public_bin, key, KEYS_BIN_LEN) == 0)
            return &a->e[i];
    return NULL;
}

/* ---- --key and --server-key --------------------------------------------- */

bool keys_client_option(struct keys_client *k, int opt, const char *arg)
{
    if (opt == KEYS_OPT_KEY)
        k->key_path = arg;
    else if (opt == KEYS_OPT_SERVER_KEY)
        k->server_key_path = arg;
    else
        return false;
    return true;
}

void keys_client_load(struct keys_client *k)
{
    char err[ERR_LEN];
    k->enabled = false;
    if (!k->key_path && !k->server_key_path)
        return;
    if (!k->key_path)
        die("--server-key needs --key FILE too: this client's key pair (NAME.key)");
    if (!k->server_key_path)
        die("--key needs --server-key FILE too: the trainer's public key (its .pub)");
    if (keys_read_pair(k->key_path, &k->pair, err) < 0)
        die("--key %s", err);
    if (keys_read_public(k->server_key_path, k->server_public, err) < 0)
        die("--server-key %s", err);
    k->enabled = true;
}
