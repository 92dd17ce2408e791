#pragma once

// Everything the diffstride library offers.
#include <diffstride/batches.h>
#include <diffstride/cifar.h>
#include <diffstride/complexity_penalty.h>
#include <diffstride/dataset.h>
#include <diffstride/diff_stride.h>
#include <diffstride/fixed_spectral_pooling.h>
#include <diffstride/idx.h>
#include <diffstride/pooling_choice.h>
#include <diffstride/residual_layer.h>
#include <diffstride/resnet.h>
#include <diffstride/spatial_pooling.h>
