/* Shared by the edgerm dataflow operators: records, arguments, output.
 *
 * A record is one line "<src> <seq> <t> <value>" (docs/dataflow.md): the
 * value is the rest of the line, a number ("21.5") or compact JSON
 * ('{"temperature":21.5}'). An operator reads a micro-batch of records on
 * stdin and writes records on stdout; it keeps src, seq and t as they came
 * (copied as text, so nothing is lost to float formatting) and writes numbers
 * with VALUE_FORMAT. With "--field NAME" an operator works on the number in
 * the top-level field NAME of a JSON object record (select_value) and writes
 * the record back with only that field changed (emit_value). Malformed lines
 * are skipped and noted on stderr. A bad argument exits with status 2 and a
 * usage line on stderr: the agent counts that batch as an error and, after
 * 10 in a row, fails the task with the message.
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
    char *text;   /* the value as written: a number or JSON */
    int is_number;
    double value; /* the number, when is_number */
} record;

/* Split `line` (modified in place) into a record; 0 on success, -1 if malformed. */
static inline int parse_record(char *line, record *r) {
    char *fields[3];
    char *p = line;
    for (int n = 0; n < 3; n++) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0' || *p == '\n' || *p == '\r') {
            return -1;
        }
        fields[n] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            p++;
        }
        if (*p != ' ' && *p != '\t') {
            return -1;
        }
        *p++ = '\0';
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    char *end = p + strlen(p);
    while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) {
        *--end = '\0';
    }
    if (end == p) {
        return -1;
    }
    for (const char *c = fields[1]; *c; c++) {
        if (*c < '0' || *c > '9') {
            return -1;
        }
    }
    char *tend = NULL;
    strtod(fields[2], &tend);
    if (tend == fields[2] || *tend != '\0') {
        return -1;
    }
    r->src = fields[0];
    r->seq = fields[1];
    r->t = fields[2];
    r->text = p;
    char *vend = NULL;
    errno = 0;
    double v = strtod(p, &vend);
    r->is_number = (vend != p && *vend == '\0' && errno != ERANGE);
    r->value = r->is_number ? v : 0.0;
    if (!r->is_number && strchr("{[\"tfn", *p) == NULL) {
        return -1; /* neither a number nor JSON */
    }
    return 0;
}

/* The end of the JSON value starting at `p` (strings, nesting), or NULL if it does not end. */
static inline const char *json_skip(const char *p) {
    int depth = 0;
    int in_string = 0;
    for (; *p; p++) {
        char c = *p;
        if (in_string) {
            if (c == '\\' && p[1] != '\0') {
                p++;
            } else if (c == '"') {
                in_string = 0;
                if (depth == 0) {
                    return p + 1;
                }
            }
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) {
                return p; /* the end of the enclosing object */
            }
            if (--depth == 0) {
                return p + 1;
            }
        } else if (depth == 0 && (c == ',' || c == ' ')) {
            return p;
        }
    }
    return depth == 0 && !in_string ? p : NULL;
}

/* Where the value of top-level field `name` of the JSON object `json` starts and ends; 0 if found. */
static inline int json_field(const char *json, const char *name, const char **start, const char **end) {
    const char *p = json;
    while (*p == ' ') {
        p++;
    }
    if (*p != '{') {
        return -1;
    }
    p++;
    size_t len = strlen(name);
    for (;;) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        if (*p != '"') {
            return -1; /* '}' or broken: no such field */
        }
        const char *key = p + 1;
        const char *key_end = json_skip(p);
        if (key_end == NULL) {
            return -1;
        }
        p = key_end;
        while (*p == ' ') {
            p++;
        }
        if (*p != ':') {
            return -1;
        }
        p++;
        while (*p == ' ') {
            p++;
        }
        const char *value_end = json_skip(p);
        if (value_end == NULL) {
            return -1;
        }
        /* a key without escapes compares as it is written */
        if ((size_t)(key_end - 1 - key) == len && strncmp(key, name, len) == 0) {
            *start = p;
            *end = value_end;
            return 0;
        }
        p = value_end;
    }
}

/* The number a record stands for: its value, or (with `field`) that field of its JSON object.
 * 0 and *v set when there is one; -1 otherwise (not a number, no such field, not an object). */
static inline int select_value(const record *r, const char *field, double *v) {
    if (field == NULL) {
        if (!r->is_number) {
            return -1;
        }
        *v = r->value;
        return 0;
    }
    const char *start = NULL;
    const char *end = NULL;
    if (r->is_number || json_field(r->text, field, &start, &end) != 0) {
        return -1;
    }
    char *num_end = NULL;
    errno = 0;
    double x = strtod(start, &num_end);
    if (num_end != end || errno == ERANGE) {
        return -1;
    }
    *v = x;
    return 0;
}

/* The record unchanged. */
static inline void emit_record(const record *r) {
    printf("%s %s %s %s\n", r->src, r->seq, r->t, r->text);
}

/* The record with its number replaced: the value itself, or (with `field`) that field only. */
static inline void emit_value(const record *r, const char *field, double value) {
    const char *start = NULL;
    const char *end = NULL;
    if (field == NULL || json_field(r->text, field, &start, &end) != 0) {
        printf("%s %s %s " VALUE_FORMAT "\n", r->src, r->seq, r->t, value);
        return;
    }
    printf("%s %s %s %.*s" VALUE_FORMAT "%s\n", r->src, r->seq, r->t, (int)(start - r->text), r->text, value, end);
}

static inline void emit(const record *r, double value) {
    emit_value(r, NULL, value);
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
