#pragma once
// A deliberate violation: the layering check must reject this tree.
#include <diffstride/train/config.h>
