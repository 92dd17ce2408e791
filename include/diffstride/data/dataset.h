#pragma once

// An image classification dataset held in memory, and the datasets this
// project reads: CIFAR-10, CIFAR-100 (binary versions) and Fashion-MNIST (IDX).
// Formats: docs/data.md.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace diffstride {

/// One split of a dataset, as stored: images N x C x H x W (uint8, 0-255),
/// labels N (int64, in [0, num_classes)).
struct Dataset {
  std::string name;
  at::Tensor images;
  at::Tensor labels;
  /// CIFAR-100's 20 superclasses (N, int64); undefined for the others.
  at::Tensor coarse_labels;
  int64_t num_classes = 0;
};

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1],
/// used to normalise the network's input: (x / 255 - mean) / std.
struct Normalization {
  std::vector<double> mean, std;
};

/// The names load_dataset accepts: cifar10, cifar100, fashion_mnist.
std::vector<std::string> dataset_names();

/// The normalisation of dataset `name`: the recipe's constants for CIFAR;
/// for Fashion-MNIST mean 0.2860 and std 0.3530, computed from its 60,000
/// training images (`diffstride data --dataset fashion_mnist` prints them).
Normalization dataset_normalization(const std::string& name);

/// Where dataset `name` is read from when no folder is given:
/// /usr/share/datasets/fashion-mnist for Fashion-MNIST (Debian's
/// dataset-fashion-mnist), data/<name> for CIFAR.
std::string default_data_dir(const std::string& name);

/// Split `split` ("train" or "test") of dataset `name` from `data_dir`
/// (default_data_dir when empty). Errors name the missing or bad file and
/// what was expected.
Dataset load_dataset(const std::string& name,
                     const std::string& split,
                     const std::string& data_dir = "");

}  // namespace diffstride
