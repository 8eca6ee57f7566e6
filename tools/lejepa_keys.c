/*
 * lejepa_keys.c: `lejepa keys new NAME [--out DIR] [--role ROLE] [--force]`:
 * a CurveZMQ key pair as NAME.key and NAME.pub (proto/keys.h), and the line
 * to paste into the trainer's allow-list. It only writes files: it never
 * edits an allow-list nor replaces a key unless told to.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "lejepa_cli.h"
#include "util.h"

#define KEYS_DEFAULT_OUT "keys"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa keys new NAME [--out DIR] [--role ROLE] [--force]\n"
        "\n"
        "Makes a CurveZMQ key pair for the trainer or one client:\n"
        "  DIR/NAME.key  public and secret key, mode 0600: stays on the machine\n"
        "                that runs NAME (--key FILE of loaders, evaluators,\n"
        "                monitors; the trainer's own pair)\n"
        "  DIR/NAME.pub  public key only: the trainer's goes to every client\n"
        "                (--server-key FILE); a client's goes into the allow-list\n"
        "and prints the allow-list line for a client (ROLE NAME PUBLICKEY).\n"
        "Formats: proto/PROTOCOL.md, \"Keys and roles\".\n"
        "\n"
        "  --out DIR     where the files go (default ./%s)\n"
        "  --role ROLE   loader, evaluator or monitor: the role in the printed\n"
        "                allow-list line (default loader)\n"
        "  --force       replace existing NAME.key and NAME.pub\n"
        "  --help\n"
        "\n"
        "Exit status: 0 written, 2 bad arguments or files.\n",
        KEYS_DEFAULT_OUT);
}

int lejepa_keys_main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"out", required_argument, NULL, 'o'},
        {"role", required_argument, NULL, 'r'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = KEYS_DEFAULT_OUT, *role = "loader";
    bool force = false;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'r': role = optarg; break;
        case 'f': force = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || strcmp(argv[optind], "new") != 0) {
        usage(stderr);
        return 2;
    }
    if (optind + 2 != argc)
        die("keys new takes one NAME (see lejepa keys --help)");
    if (strcmp(role, "loader") != 0 && strcmp(role, "evaluator") != 0 &&
        strcmp(role, "monitor") != 0)
        die("--role %s: expected loader, evaluator or monitor", role);
    const char *name = argv[optind + 1];
    char err[ERR_LEN], key_path[4096], pub_path[4096];
    struct keys_pair kp;
    if (keys_name_check(name, err) < 0)
        die("%s", err);
    if (keys_generate(&kp, err) < 0 ||
        keys_write_pair(out, name, &kp, force, key_path, pub_path, err) < 0)
        die("%s", err);
    printf("wrote %s (secret, mode 0600) and %s (public)\n"
           "a client:  --key %s --server-key TRAINER.pub, and this line in the\n"
           "           trainer's allow-list:\n"
           "%s %s %s\n"
           "a trainer: its .key stays with it; give %s to every client (--server-key)\n",
           key_path, pub_path, key_path, role, name, kp.public_z85, pub_path);
    return 0;
}
