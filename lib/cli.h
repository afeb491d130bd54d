/* cli: the options every program answers the same way, without starting a FastCGI loop or the worker:
 *   --help      what the program is, how it is run, where its settings come from; exit 0
 *   --version   "<prog> (gemini-backend) <version>", the version the Makefile compiled in; exit 0
 *   --check     load and validate the configuration, connect to PostgreSQL (and check that schema.sql was
 *               applied) and to Redis, print one line per finding; exit 0 when all is well, else 1
 * They are handled before main() runs (config.c's constructor calls cli_early), so the programs under cgi-bin/ and
 * worker/ need no code for them. Ignored under CGI (GATEWAY_INTERFACE set): some servers turn a query string into argv,
 * and a request must never run --check. */
#ifndef GB_CLI_H
#define GB_CLI_H

#include <stdio.h>

/* The version compiled in (VERSION file plus git describe, from the Makefile). Static storage. */
const char *cli_version(void);

/* Look at argv for --help, --version or --check (also -h). Returns -1 when none is there (the program goes
 * on; its own options are its own business), else the exit status after answering on stdout. */
int cli_options(int argc, char **argv);

/* The --check of the current environment for prog ("auth", "worker", ...), findings written to out.
 * 0 all good, 1 something is wrong. */
int cli_check(const char *prog, FILE *out);

/* cli_options, exiting with its status when it answered. For the constructor in config.c. */
void cli_early(int argc, char **argv);

#endif
