#pragma once

// The diffstride library: the pooling layers (nn/) and the networks built
// with them (models/). Data and training are the diffstride_train library's
// (data/, train/).
#include <diffstride/models/complexity_penalty.h>
#include <diffstride/models/pooling_choice.h>
#include <diffstride/models/residual_layer.h>
#include <diffstride/models/resnet.h>
#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/fixed_spectral_pooling.h>
#include <diffstride/nn/spatial_pooling.h>
