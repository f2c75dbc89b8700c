/* map: value * scale + offset, for every record (src, seq, t kept).
 *   map [--scale A] [--offset B]     defaults: scale 1, offset 0
 */
#include "record.h"

static const char *USAGE = "[--scale A] [--offset B]";

typedef struct {
    double scale;
    double offset;
} params;

static void apply(const record *r, void *ctx) {
    const params *p = ctx;
    emit(r, r->value * p->scale + p->offset);
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--scale", "--offset", NULL};
    check_flags(argc, argv, known, USAGE);
    params p = {
        arg_double(argc, argv, "--scale", 1.0, NULL, USAGE),
        arg_double(argc, argv, "--offset", 0.0, NULL, USAGE),
    };
    for_each_record(apply, &p);
    return 0;
}
