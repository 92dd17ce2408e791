#pragma once

// An image classification dataset held in memory, and the datasets this
// project reads: CIFAR-10, CIFAR-100 (binary versions) and Fashion-MNIST (IDX).
// Formats: docs/data.md.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <memory>
#include <string>
#include <vector>

namespace diffstride {

/// Examples read from files when a batch needs them, for datasets larger
/// than memory (image folders).
class ExampleReader {
 public:
  virtual ~ExampleReader() = default;
  /// C x H x W, the same for every example.
  virtual std::vector<int64_t> example_shape() const = 0;
  /// Writes example `index` (C x H x W values in [0, full_scale()] for
  /// images, [-1, 1] for sound) to `out`; `draw` seeds its random crop, if
  /// the split has one. Returns the index of the example written: `index`,
  /// or a later one where a bad file was skipped.
  virtual int64_t read(int64_t index, uint64_t draw, float* out) const = 0;
  /// The value normalisation divides by before it subtracts the mean: 255
  /// for pixels, 1 for sound.
  virtual double full_scale() const = 0;
  /// Threads that should call read at once.
  virtual int64_t workers() const = 0;
  /// Files skipped so far (bad files, and non-image files when indexed).
  virtual int64_t skipped_files() const = 0;
};

/// One split of a dataset: images N x C x H x W (uint8, 0-255) in memory,
/// or a reader of files; labels N (int64, in [0, num_classes)).
struct Dataset {
  std::string name;
  at::Tensor images;  // undefined when `reader` reads the examples
  std::shared_ptr<const ExampleReader> reader;
  at::Tensor labels;
  /// CIFAR-100's 20 superclasses (N, int64); undefined for the others.
  at::Tensor coarse_labels;
  int64_t num_classes = 0;
  /// The classes' names where the data has them (folders), else empty.
  std::vector<std::string> class_names;

  int64_t size() const {
    return labels.size(0);
  }
  /// C x H x W of every example.
  std::vector<int64_t> example_shape() const {
    return reader ? reader->example_shape() : images.sizes().slice(1).vec();
  }
};

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1],
/// used to normalise the network's input: (x / 255 - mean) / std.
struct Normalization {
  std::vector<double> mean, std;
};

/// How folders of files (docs/data.md, "Image folders" and "Audio
/// folders") make their examples.
struct FolderOptions {
  /// Images: examples are image_size x image_size pixels.
  TORCH_ARG(int64_t, image_size) = 0;
  /// Images: a file declaring more pixels (width x height) is a bad file,
  /// refused before any is decoded (a few bytes can declare gigapixels).
  TORCH_ARG(int64_t, max_image_pixels) = 50'000'000;
  /// Images: 3 (RGB) or 1 (gray); sound: 1 (mono, channels averaged) or 2
  /// (a mono file's channel repeated; the first two of more). 0: 3 for
  /// images, 1 for sound.
  TORCH_ARG(int64_t, channels) = 0;
  /// Images, training examples: "random_resized" (a box of 8-100% of the
  /// area and aspect ratio 3/4-4/3, mirrored with probability 1/2, resized:
  /// the ImageNet recipe's RandomResizedCrop) or "center" (as evaluation:
  /// the shorter side resized to image_size, the centre cropped).
  TORCH_ARG(std::string, train_crop) = "random_resized";
  /// Sound: the examples' sample rate (Hz) and length (samples). Longer
  /// clips are cropped (training: at a random offset; evaluation: the
  /// centre), shorter ones padded with silence at the end.
  TORCH_ARG(int64_t, sample_rate) = 16000;
  TORCH_ARG(int64_t, clip_samples) = 16000;
  /// Sound: a file declaring more frames (samples per channel) is a bad
  /// file, refused before any is decoded (2^25: 11.6 minutes at 48 kHz, 35
  /// at 16 kHz).
  TORCH_ARG(int64_t, max_sound_frames) = int64_t{1} << 25;
  /// Sound at another rate: resampled (true) or a bad file (false).
  TORCH_ARG(bool, resample) = true;
  /// A file that cannot be decoded (unreadable, truncated, not of the
  /// folder's kind): false: the run stops with its name; true: it is
  /// skipped (the next example of the folder takes its place) and counted.
  TORCH_ARG(bool, skip_bad_files) = false;
  /// Threads decoding one batch.
  TORCH_ARG(int64_t, workers) = 4;
};

/// How the tool reports `count` files a reader skipped: "N file(s) skipped
/// as bad files (...)".
std::string skipped_files_message(int64_t count);

/// The training crops FolderOptions accepts: random_resized, center.
std::vector<std::string> train_crop_names();

/// The names load_dataset accepts: cifar10, cifar100, fashion_mnist,
/// image_folder, audio_folder.
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
                     const std::string& data_dir = "",
                     const FolderOptions& folder = {});

}  // namespace diffstride
