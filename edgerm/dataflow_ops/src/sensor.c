/* sensor: validate and calibrate raw readings the agent formed into records.
 *   sensor [--min LO] [--max HI] [--scale A] [--offset B] [--field NAME]
 * Drops readings that are not finite or lie outside [LO, HI] (checked on the
 * raw value: a sensor's error codes, like a DS18B20's 85.0, are raw values),
 * then writes value * A + B (defaults 1 and 0). With --field, the number is
 * the top-level field NAME of a JSON object reading; a record without that
 * number passes through unchanged.
 */
#include "record.h"

static const char *USAGE = "[--min LO] [--max HI] [--scale A] [--offset B] [--field NAME]";

typedef struct {
    int has_min, has_max;
    double min, max, scale, offset;
    const char *field;
} params;

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    double v;
    if (select_value(r, p->field, &v) != 0) {
        emit_record(r);
        return;
    }
    if (!isfinite(v)) {
        return;
    }
    if (p->has_min && v < p->min) {
        return;
    }
    if (p->has_max && v > p->max) {
        return;
    }
    emit_value(r, p->field, v * p->scale + p->offset);
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--min", "--max", "--scale", "--offset", "--field", NULL};
    check_flags(argc, argv, known, USAGE);
    params p;
    p.min = arg_double(argc, argv, "--min", 0.0, &p.has_min, USAGE);
    p.max = arg_double(argc, argv, "--max", 0.0, &p.has_max, USAGE);
    p.scale = arg_double(argc, argv, "--scale", 1.0, NULL, USAGE);
    p.offset = arg_double(argc, argv, "--offset", 0.0, NULL, USAGE);
    p.field = arg_word(argc, argv, "--field", NULL, USAGE);
    for_each_record(apply, &p);
    return 0;
}
