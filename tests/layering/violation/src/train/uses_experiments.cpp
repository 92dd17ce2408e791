// A deliberate violation: the layering check must reject this tree.
#include <diffstride/experiments/sweep.h>
