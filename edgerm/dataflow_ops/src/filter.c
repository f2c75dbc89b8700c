/* filter: keep the records whose value is strictly above and/or below a threshold.
 *   filter [--above X] [--below Y] [--field NAME]   at least one; both keep X < value < Y
 * With --field, the value tested is the number in top-level field NAME of a
 * JSON object record; the record is kept whole. A record without that number
 * is dropped (it is not above X nor below Y).
 */
#include "record.h"

static const char *USAGE = "[--above X] [--below Y] [--field NAME]";

typedef struct {
    int has_above, has_below;
    double above, below;
    const char *field;
} params;

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    double v;
    if (select_value(r, p->field, &v) != 0) {
        return;
    }
    if (p->has_above && !(v > p->above)) {
        return;
    }
    if (p->has_below && !(v < p->below)) {
        return;
    }
    emit_record(r);
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--above", "--below", "--field", NULL};
    check_flags(argc, argv, known, USAGE);
    params p;
    p.above = arg_double(argc, argv, "--above", 0.0, &p.has_above, USAGE);
    p.below = arg_double(argc, argv, "--below", 0.0, &p.has_below, USAGE);
    p.field = arg_word(argc, argv, "--field", NULL, USAGE);
    if (!p.has_above && !p.has_below) {
        usage_exit(argv[0], USAGE, "give --above, --below or both");
    }
    for_each_record(apply, &p);
    return 0;
}
