/* Shared by the edgerm dataflow operators: records, arguments, output.
 *
 * A record is one line "<src> <seq> <t> <value>" (docs/dataflow.md). An
 * operator reads a micro-batch of records on stdin and writes records on
 * stdout; it keeps src, seq and t as they came (copied as text, so nothing
 * is lost to float formatting) and writes values with VALUE_FORMAT.
 * Malformed lines are skipped and noted on stderr. A bad argument exits
 * with status 2 and a usage line on stderr: the agent counts that batch as
 * an error and, after 10 in a row, fails the task with the message.
 */
#ifndef EDGERM_RECORD_H
#define EDGERM_RECORD_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUE_FORMAT "%.12g"

typedef struct {
    char *src;
    char *seq;
    char *t;
    double value;
} record;

/* Split `line` (modified in place) into a record; 0 on success, -1 if malformed. */
static inline int parse_record(char *line, record *r) {
    char *fields[4];
    char *save = NULL;
    char *tok = strtok_r(line, " \t\r\n", &save);
    int n = 0;
    while (tok != NULL && n < 4) {
        fields[n++] = tok;
        tok = strtok_r(NULL, " \t\r\n", &save);
    }
    if (n != 4 || tok != NULL) {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(fields[3], &end);
    if (end == fields[3] || *end != '\0' || errno == ERANGE) {
        return -1;
    }
    r->src = fields[0];
    r->seq = fields[1];
    r->t = fields[2];
    r->value = v;
    return 0;
}

static inline void emit(const record *r, double value) {
    printf("%s %s %s " VALUE_FORMAT "\n", r->src, r->seq, r->t, value);
}

static inline void usage_exit(const char *prog, const char *usage, const char *why) {
    fprintf(stderr, "%s: %s\nusage: %s %s\n", prog, why, prog, usage);
    exit(2);
}

/* The number after `--name`, or `dflt` when the flag is absent; *found tells which. */
static inline double arg_double(int argc, char **argv, const char *name, double dflt, int *found, const char *usage) {
    if (found != NULL) {
        *found = 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            if (i + 1 >= argc) {
                char why[128];
                snprintf(why, sizeof why, "%s needs a value", name);
                usage_exit(argv[0], usage, why);
            }
            char *end = NULL;
            double v = strtod(argv[i + 1], &end);
            if (end == argv[i + 1] || *end != '\0' || !isfinite(v)) {
                char why[192];
                snprintf(why, sizeof why, "%s: not a number: %.64s", name, argv[i + 1]);
                usage_exit(argv[0], usage, why);
            }
            if (found != NULL) {
                *found = 1;
            }
            return v;
        }
    }
    return dflt;
}

/* The word after `--name`, or `dflt`. */
static inline const char *arg_word(int argc, char **argv, const char *name, const char *dflt, const char *usage) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            if (i + 1 >= argc) {
                char why[128];
                snprintf(why, sizeof why, "%s needs a value", name);
                usage_exit(argv[0], usage, why);
            }
            return argv[i + 1];
        }
    }
    return dflt;
}

/* Refuse flags this operator does not know (each takes one value). */
static inline void check_flags(int argc, char **argv, const char *const *known, const char *usage) {
    for (int i = 1; i < argc; i += 2) {
        int ok = 0;
        for (const char *const *k = known; *k != NULL; k++) {
            if (strcmp(argv[i], *k) == 0) {
                ok = 1;
            }
        }
        if (!ok) {
            char why[160];
            snprintf(why, sizeof why, "unknown argument: %.64s", argv[i]);
            usage_exit(argv[0], usage, why);
        }
    }
}

/* Call `fn` for every well-formed record on stdin; malformed lines are noted on stderr. */
static inline void for_each_record(void (*fn)(const record *, void *), void *ctx) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    while ((len = getline(&line, &cap, stdin)) != -1) {
        lineno++;
        if (len <= 1 && (len == 0 || line[0] == '\n')) {
            continue;
        }
        record r;
        if (parse_record(line, &r) != 0) {
            fprintf(stderr, "line %ld: not a record, skipped\n", lineno);
            continue;
        }
        fn(&r, ctx);
    }
    free(line);
}

#endif
