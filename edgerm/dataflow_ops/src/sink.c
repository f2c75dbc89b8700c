/* sink: format records before the agent delivers them (console, file, HTTP).
 *   sink [--format records|csv|json] [--precision P]
 * records: "<src> <seq> <t> <value>" (the default; keeps the record format)
 * csv:     "<src>,<seq>,<t>,<value>"
 * json:    {"src":"<src>","seq":<seq>,"t":<t>,"value":<value>}   (one object per line)
 * --precision P writes values with P digits after the point (default: as many as needed).
 * A JSON value is written as it came: in json, "value" holds it as JSON.
 */
#include "record.h"

static const char *USAGE = "[--format records|csv|json] [--precision P]";

enum fmt { RECORDS, CSV, JSON };

typedef struct {
    enum fmt fmt;
    int precision; /* -1: VALUE_FORMAT */
} params;

static void value_text(const params *p, double v, char *buf, size_t size) {
    if (p->precision >= 0) {
        snprintf(buf, size, "%.*f", p->precision, v);
    } else {
        snprintf(buf, size, VALUE_FORMAT, v);
    }
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        putchar(*s);
    }
    putchar('"');
}

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    char number[64];
    const char *v = r->text;
    if (r->is_number) {
        value_text(p, r->value, number, sizeof number);
        v = number;
    }
    switch (p->fmt) {
        case RECORDS:
            printf("%s %s %s %s\n", r->src, r->seq, r->t, v);
            break;
        case CSV:
            printf("%s,%s,%s,%s\n", r->src, r->seq, r->t, v);
            break;
        case JSON:
            fputs("{\"src\":", stdout);
            json_string(r->src);
            printf(",\"seq\":%s,\"t\":%s,\"value\":%s}\n", r->seq, r->t, !r->is_number || isfinite(r->value) ? v : "null");
            break;
    }
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--format", "--precision", NULL};
    check_flags(argc, argv, known, USAGE);
    params p;
    const char *fmt = arg_word(argc, argv, "--format", "records", USAGE);
    if (strcmp(fmt, "records") == 0) {
        p.fmt = RECORDS;
    } else if (strcmp(fmt, "csv") == 0) {
        p.fmt = CSV;
    } else if (strcmp(fmt, "json") == 0) {
        p.fmt = JSON;
    } else {
        usage_exit(argv[0], USAGE, "--format must be records, csv or json");
    }
    int found = 0;
    double prec = arg_double(argc, argv, "--precision", -1.0, &found, USAGE);
    if (found && (prec < 0 || prec > 17 || prec != floor(prec))) {
        usage_exit(argv[0], USAGE, "--precision must be a whole number from 0 to 17");
    }
    p.precision = found ? (int)prec : -1;
    for_each_record(apply, &p);
    return 0;
}
