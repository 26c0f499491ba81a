/* pullwatch-fleet's commands, called from fleet/main.c with argv[0] = the command name. */
#pragma once

/* `serve`: the collector. Returns the process exit status. */
int fleet_serve_main(int argc, char **argv);

/* Bearer tokens → cluster names: a file of "TOKEN CLUSTER" lines ('#' comments, blank
 * lines ignored), re-read when it changes (checked at most once a second). */
typedef struct Tokens Tokens;
int tokens_new(Tokens **ret, const char *path, char *err, size_t errlen);
Tokens *tokens_free(Tokens *t);
/* The cluster of token into buf (size bytes): 1 if the token is known, else 0. When the
 * file changed but cannot be used (unreadable, a bad line) the last good set stays in
 * use and err says why, once per problem (err[0] stays 0 otherwise). Compares in
 * constant time in the token's bytes. */
int tokens_lookup(Tokens *t, const char *token, char *buf, size_t size, char *err, size_t errlen);
