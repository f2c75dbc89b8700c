/* aggregate: a tumbling window of N records reduced to one.
 *   aggregate [--window N] [--agg mean|min|max|sum|count] [--field NAME]    defaults: 10, mean
 * Emits "<operator> <k> <t> <value>" after every N input records: <operator>
 * is argv[0] (the agent passes the operator name, or "<operator>.<i>" when it
 * has replicas), k counts the windows this instance emitted (0, 1, ...), t is
 * the last input's t. With --field, the numbers are the top-level field NAME
 * of JSON object records; records without a number are skipped (not counted).
 *
 * The window spans micro-batches: the agent gives each operator instance a
 * private directory, preopened as /state, that lasts as long as the task.
 * The partial window and the counter are kept in /state/aggregate between
 * batches. Without /state (run by hand) a window lives within one batch.
 */
#include "record.h"

static const char *USAGE = "[--window N] [--agg mean|min|max|sum|count] [--field NAME]";
static const char *STATE = "/state/aggregate";

enum agg { MEAN, MIN, MAX, SUM, COUNT };

typedef struct {
    enum agg agg;
    long window;
    const char *name;
    const char *field;
    /* state */
    long emitted;
    long n;
    double acc;
    char last_t[64];
} window;

static void load(window *w) {
    FILE *f = fopen(STATE, "r");
    if (f == NULL) {
        return;
    }
    long emitted, n;
    double acc;
    char t[64];
    if (fscanf(f, "%ld %ld %lf %63s", &emitted, &n, &acc, t) == 4 && n >= 0 && n < w->window) {
        w->emitted = emitted;
        w->n = n;
        w->acc = acc;
        snprintf(w->last_t, sizeof w->last_t, "%s", t);
    }
    fclose(f);
}

static void save(const window *w) {
    FILE *f = fopen("/state/aggregate.tmp", "w");
    if (f == NULL) {
        return; /* no /state: the window ends with the batch */
    }
    fprintf(f, "%ld %ld %.17g %s\n", w->emitted, w->n, w->acc, w->last_t[0] ? w->last_t : "0");
    if (fclose(f) == 0) {
        rename("/state/aggregate.tmp", STATE);
    }
}

static void add(const record *r, void *ctx) {
    window *w = ctx;
    double v;
    if (select_value(r, w->field, &v) != 0) {
        return;
    }
    if (w->n == 0) {
        w->acc = (w->agg == COUNT) ? 0.0 : (w->agg == MIN || w->agg == MAX) ? v : 0.0;
    }
    switch (w->agg) {
        case MEAN:
        case SUM:
            w->acc += v;
            break;
        case MIN:
            if (v < w->acc) {
                w->acc = v;
            }
            break;
        case MAX:
            if (v > w->acc) {
                w->acc = v;
            }
            break;
        case COUNT:
            w->acc += 1.0;
            break;
    }
    w->n++;
    snprintf(w->last_t, sizeof w->last_t, "%s", r->t);
    if (w->n >= w->window) {
        double out = (w->agg == MEAN) ? w->acc / (double)w->n : w->acc;
        printf("%s %ld %s " VALUE_FORMAT "\n", w->name, w->emitted, w->last_t, out);
        w->emitted++;
        w->n = 0;
        w->acc = 0.0;
    }
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--window", "--agg", "--field", NULL};
    check_flags(argc, argv, known, USAGE);
    window w;
    memset(&w, 0, sizeof w);
    double n = arg_double(argc, argv, "--window", 10.0, NULL, USAGE);
    if (n < 1 || n != floor(n) || n > 1e9) {
        usage_exit(argv[0], USAGE, "--window must be a whole number >= 1");
    }
    w.window = (long)n;
    const char *agg = arg_word(argc, argv, "--agg", "mean", USAGE);
    if (strcmp(agg, "mean") == 0) {
        w.agg = MEAN;
    } else if (strcmp(agg, "min") == 0) {
        w.agg = MIN;
    } else if (strcmp(agg, "max") == 0) {
        w.agg = MAX;
    } else if (strcmp(agg, "sum") == 0) {
        w.agg = SUM;
    } else if (strcmp(agg, "count") == 0) {
        w.agg = COUNT;
    } else {
        usage_exit(argv[0], USAGE, "--agg must be mean, min, max, sum or count");
    }
    w.field = arg_word(argc, argv, "--field", NULL, USAGE);
    w.name = (argc > 0 && argv[0][0] != '\0' && strchr(argv[0], ' ') == NULL) ? argv[0] : "aggregate";
    load(&w);
    for_each_record(add, &w);
    save(&w);
    return 0;
}
