/* map: value * scale + offset, for every record (src, seq, t kept).
 *   map [--scale A] [--offset B] [--field NAME]     defaults: scale 1, offset 0
 * With --field, the number in top-level field NAME of a JSON object record is
 * mapped and the rest of the object kept as it is. A record without that
 * number (a JSON value without --field, an object without the field) passes
 * through unchanged.
 */
#include "record.h"

static const char *USAGE = "[--scale A] [--offset B] [--field NAME]";

typedef struct {
    double scale;
    double offset;
    const char *field;
} params;

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    double v;
    if (select_value(r, p->field, &v) != 0) {
        emit_record(r);
        return;
    }
    emit_value(r, p->field, v * p->scale + p->offset);
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--scale", "--offset", "--field", NULL};
    check_flags(argc, argv, known, USAGE);
    params p = {
        arg_double(argc, argv, "--scale", 1.0, NULL, USAGE),
        arg_double(argc, argv, "--offset", 0.0, NULL, USAGE),
        arg_word(argc, argv, "--field", NULL, USAGE),
    };
    for_each_record(apply, &p);
    return 0;
}
