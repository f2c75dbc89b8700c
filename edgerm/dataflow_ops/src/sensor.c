/* sensor: validate and calibrate raw readings the agent formed into records.
 *   sensor [--min LO] [--max HI] [--scale A] [--offset B]
 * Drops readings that are not finite or lie outside [LO, HI] (checked on the
 * raw value: a sensor's error codes, like a DS18B20's 85.0, are raw values),
 * then writes value * A + B (defaults 1 and 0).
 */
#include "record.h"

static const char *USAGE = "[--min LO] [--max HI] [--scale A] [--offset B]";

typedef struct {
    int has_min, has_max;
    double min, max, scale, offset;
} params;

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    if (!isfinite(r->value)) {
        return;
    }
    if (p->has_min && r->value < p->min) {
        return;
    }
    if (p->has_max && r->value > p->max) {
        return;
    }
    emit(r, r->value * p->scale + p->offset);
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--min", "--max", "--scale", "--offset", NULL};
    check_flags(argc, argv, known, USAGE);
    params p;
    p.min = arg_double(argc, argv, "--min", 0.0, &p.has_min, USAGE);
    p.max = arg_double(argc, argv, "--max", 0.0, &p.has_max, USAGE);
    p.scale = arg_double(argc, argv, "--scale", 1.0, NULL, USAGE);
    p.offset = arg_double(argc, argv, "--offset", 0.0, NULL, USAGE);
    for_each_record(apply, &p);
    return 0;
}
