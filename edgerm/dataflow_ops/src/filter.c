/* filter: keep the records whose value is strictly above and/or below a threshold.
 *   filter [--above X] [--below Y]   at least one; both keep X < value < Y
 */
#include "record.h"

static const char *USAGE = "[--above X] [--below Y]";

typedef struct {
    int has_above, has_below;
    double above, below;
} params;

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    if (p->has_above && !(r->value > p->above)) {
        return;
    }
    if (p->has_below && !(r->value < p->below)) {
        return;
    }
    emit(r, r->value);
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--above", "--below", NULL};
    check_flags(argc, argv, known, USAGE);
    params p;
    p.above = arg_double(argc, argv, "--above", 0.0, &p.has_above, USAGE);
    p.below = arg_double(argc, argv, "--below", 0.0, &p.has_below, USAGE);
    if (!p.has_above && !p.has_below) {
        usage_exit(argv[0], USAGE, "give --above, --below or both");
    }
    for_each_record(apply, &p);
    return 0;
}
