/* pullwatch-fleet: the central collector (serve) and the fleet report (report). */
#include <stdio.h>
#include <string.h>

#include "pullwatch/fleet.h"
#include "pullwatch/util.h"

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static int help(void) {
        printf("pullwatch-fleet serve --listen ADDR:PORT --db URL [--tls-cert F --tls-key F] [--client-ca F]\n"
               "                      [--tokens F] [--retention DAYS] [--max-body BYTES]\n"
               "pullwatch-fleet version | --help\n");
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "help"))
                return argc < 2 ? (help(), 2) : help();
        if (streq(argv[1], "version") || streq(argv[1], "--version")) {
                printf("pullwatch-fleet %s\n", PULLWATCH_VERSION);
                return 0;
        }
        if (streq(argv[1], "serve"))
                return fleet_serve_main(argc - 1, argv + 1);
        /* --- report engineer: the `report` subcommand goes here --- */
        fprintf(stderr, "pullwatch-fleet: unknown command %s (try --help)\n", argv[1]);
        return 2;
}
